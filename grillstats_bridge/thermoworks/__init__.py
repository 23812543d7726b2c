"""The ThermoWorks cloud: scenarios, Firestore decoding, the client, and the simulator.

Nothing in this package knows of the database or MQTT. Import the submodules
directly (``thermoworks.scenario`` is pure and imports no I/O library).
"""
