"""A fake ThermoWorks cloud on loopback, driven by scenario files (the demo's and tests' cloud)."""
