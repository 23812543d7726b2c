"""The real ThermoWorks cloud: Firebase sign-in, Firestore decoding, the client and its errors.

Nothing in this package knows of the database, MQTT or the bridge's configuration:
the client takes plain arguments.
"""
