"""Cooking sessions: the pure tracker, its service over the database, its HA entities."""
