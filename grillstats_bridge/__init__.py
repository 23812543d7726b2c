"""Grill Stats Bridge: ThermoWorks cloud -> database -> MQTT / Home Assistant."""

__version__ = "0.1.0"
