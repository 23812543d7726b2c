"""Shared fixtures live in tests/fixtures/, one module per real part (database, broker, cloud)."""

pytest_plugins = [
    "tests.fixtures.db",
    "tests.fixtures.mqtt",
    "tests.fixtures.cloud",
    "tests.fixtures.bridge",
    "tests.fixtures.web",
]
