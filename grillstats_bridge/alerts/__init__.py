"""Temperature alerts: the pure engine, its service over the database, its HA entities."""
