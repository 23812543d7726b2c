"""Linked ThermoWorks accounts: signing in as a user and keeping the link (cloud + store)."""
