"""Shared fixtures live in tests/fixtures/, one module per real part (database, broker, cloud).

The markers of pyproject.toml are applied here, from what each test uses, so that
they always say the truth: ``postgres`` (a PostgreSQL database), ``mqtt`` (the
Mosquitto broker), ``slow`` (the whole daemon: a rig, a child process, the demo).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

pytest_plugins = [
    "tests.fixtures.db",
    "tests.fixtures.mqtt",
    "tests.fixtures.cloud",
    "tests.fixtures.bridge",
    "tests.fixtures.cli",
    "tests.fixtures.web",
]

_MQTT = {"mqtt_broker", "private_broker"}
_SLOW = {"make_rig", "daemons"}
_SLOW_MODULES = {"test_demo.py", "test_daemon_process.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = callspec.params.values() if callspec is not None else ()
        if "pg_url" in names or "postgresql" in params:
            item.add_marker(pytest.mark.postgres)
        if names & _MQTT:
            item.add_marker(pytest.mark.mqtt)
        if names & _SLOW or item.path.name in _SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The CLI's main() points the root logger at the (captured) stderr: put it back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
