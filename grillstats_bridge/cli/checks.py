"""``check-config``: try everything the daemon needs, one line per part; it changes nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from grillstats_bridge.bridge.poller import AccountPoller
from grillstats_bridge.config import Config
from grillstats_bridge.errors import GrillstatsError
from grillstats_bridge.mqtt.client import MqttClient
from grillstats_bridge.store import revisions
from grillstats_bridge.store.accounts import link_states
from grillstats_bridge.store.db import Database, safe_url, sqlite_file
from grillstats_bridge.store.secrets import SecretBox

Check = tuple[str, bool, str]
BROKER_TIMEOUT_S = 5.0


def run_checks(config: Config) -> Iterator[Check]:
    missing = _missing_sqlite_file(config.database.url)
    if missing is not None:
        # Connecting would create it (and an empty database is no check of anything).
        yield (
            "database",
            False,
            (
                f"{safe_url(config.database.url)}: no such file "
                "(created by 'grillstats-bridge db upgrade' or 'run --migrate')"
            ),
        )
        yield _broker(config)
        return
    database = Database(config.database)
    try:
        db_check = _database(database)
        yield db_check
        yield _broker(config)
        if db_check[1]:
            yield from _accounts(database, config)
    finally:
        database.dispose()


def _missing_sqlite_file(url: str) -> Path | None:
    """The SQLite file the URL names when it does not exist yet."""
    database = sqlite_file(url)
    if database is None or Path(database).exists():
        return None
    return Path(database)


def _database(database: Database) -> Check:
    where = safe_url(database.url)
    try:
        current, head = revisions.current_revision(database), revisions.head_revision()
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None) or exc
        return "database", False, f"{where}: {str(orig).strip().splitlines()[0]}"
    if current != head:
        return "database", False, f"{where}: at {current or 'base'}, needs 'db upgrade' to {head}"
    return "database", True, f"{where} (revision {current})"


def _broker(config: Config) -> Check:
    mqtt = config.mqtt
    # Its own client id: borrowing the daemon's would knock a running bridge off the broker.
    try:
        client = MqttClient(mqtt, status_topic=None, client_id=f"{mqtt.effective_client_id}-check")
    except GrillstatsError as exc:
        return "mqtt", False, str(exc)
    with _reported_here("grillstats_bridge.mqtt"):
        client.start()
        try:
            ok = client.wait_ready(BROKER_TIMEOUT_S)
            detail = client.health().last_error or "no answer"
        finally:
            client.stop(timeout=1.0)
    where = f"{mqtt.host}:{mqtt.port}{' (TLS)' if mqtt.tls else ''}"
    return "mqtt", ok, where if ok else f"{where}: {detail}"


@contextmanager
def _reported_here(logger_name: str) -> Iterator[None]:
    """The check's own line says what failed: no reconnect warnings from the client as well."""
    logger = logging.getLogger(logger_name)
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        yield
        return
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def _accounts(database: Database, config: Config) -> Iterator[Check]:
    states = link_states(database)
    if not states:
        yield "accounts", True, "none linked yet ('grillstats-bridge account link USER_EMAIL')"
        return
    box = SecretBox.from_config(config.security, create=False)
    for user_id in sorted(states):
        poller = AccountPoller(database, config, user_id, box=box)
        try:
            poll = poller.poll()
            yield f"account {user_id}", True, f"signed in, {len(poll.devices)} device(s)"
        except GrillstatsError as exc:
            yield f"account {user_id}", False, str(exc)
        finally:
            poller.close()
