"""The broker: one paho client with its will, reconnects and bounded queues; no HA."""
