"""The database: engine and pool, tables, migrations, and one module per kind of row."""
