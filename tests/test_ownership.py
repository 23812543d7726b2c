"""A reading, a session and an alert belong to a device row, and a device row to one user.

On both databases: a poll stores and evaluates only the devices its account owns;
a device claimed by another user is reported (one warning, a count in /health);
unlinking an account stops its alerts; ``devices transfer`` gives a resold device
to its new owner and leaves the old owner's history theirs. With the simulator:
two users polling the same serial.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from grillstats_bridge.accounts.service import link_account
from grillstats_bridge.alerts.rules import add_alert
from grillstats_bridge.alerts.service import AlertService
from grillstats_bridge.bridge.pipeline import Pipeline
from grillstats_bridge.cli import main
from grillstats_bridge.config import AlertsConfig, Config, SessionsConfig
from grillstats_bridge.domain import Device, Poll, Probe, Reading, Unit
from grillstats_bridge.sessions.service import SessionService
from grillstats_bridge.store.accounts import unlink_account
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.journal import OwnedReading
from grillstats_bridge.store.models import (
    AlertHistory,
    GrillingSession,
    ReadingRow,
    TemperatureAlert,
    ThermoWorksCredentials,
)
from grillstats_bridge.store.models import Device as DeviceRow
from grillstats_bridge.store.readings import ReadingBuffer
from grillstats_bridge.store.users import add_user
from tests.fixtures.bridge import MakeRig
from tests.fixtures.cloud import PITMASTER, SIGNALS
from tests.test_daemon import FAST, count

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ONE, TWO = "one@example.com", "two@example.com"
SERIAL = "SIG-SHARED"
F = Unit.FAHRENHEIT


def device(at: datetime, value: float) -> Device:
    probe = Probe(serial=SERIAL, channel=1, label="Pit", unit=F, value=value, last_seen=at)
    return Device(
        serial=SERIAL, label="Smoker", probes=(probe,), last_seen=at, last_telemetry_saved=at
    )


def poll(user_id: int, minute: int, value: float) -> Poll:
    at = T0 + timedelta(minutes=minute)
    reading = Reading(serial=SERIAL, channel=1, time=at, value=value, unit=F)
    return Poll(user_id=user_id, polled_at=at, devices=(device(at, value),), readings=(reading,))


class Rig:
    """The pipeline (devices, readings, sessions, alerts) on a real database."""

    def __init__(self, database: Database, config: Config) -> None:
        self.database = database
        with database.transaction() as db:
            self.one = add_user(db, ONE, "correct horse battery", config.security).id
            self.two = add_user(db, TWO, "correct horse battery", config.security).id
        self.sessions = SessionService(SessionsConfig())
        self.alerts = AlertService(AlertsConfig(cooldown=0, max_age=0))
        self.buffer: ReadingBuffer[OwnedReading] = ReadingBuffer(100)
        self.pipeline = Pipeline(
            database, sessions=self.sessions, alerts=self.alerts, buffer=self.buffer
        )

    def process(self, *polls: Poll) -> None:
        outcome = self.pipeline.process(polls, max(p.polled_at for p in polls))
        assert outcome.database_ok

    def alert(self, email: str, target: float) -> int:
        with self.database.transaction() as db:
            alert_id = add_alert(db, email, serial=SERIAL, probe=1, kind="target", target=target)
        self.alerts.reload_rules()
        return alert_id.id

    def firings(self) -> list[tuple[int, int]]:
        with self.database.session() as db:
            rows = db.execute(sa.select(AlertHistory.user_id, AlertHistory.alert_id))
            return sorted((u, a) for u, a in rows)


@pytest.fixture
def rig(database: Database, config: Config) -> Rig:
    return Rig(database, config)


def test_a_poll_stores_and_evaluates_only_the_devices_its_account_owns(
    rig: Rig, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    rig.process(poll(rig.one, 0, 70.0))  # user one registers the device
    alert = rig.alert(ONE, 200.0)
    with caplog.at_level(logging.WARNING, logger="grillstats_bridge.bridge.pipeline"):
        for minute in range(1, 6):  # user two's account lists it too, hot
            rig.process(poll(rig.two, minute, 250.0))
    # nothing of user two's polls is stored under the serial, fires user one's alert
    # or starts a session on user one's device row
    assert count(database, ReadingRow) == 1
    assert rig.firings() == [] and count(database, GrillingSession) == 0
    assert rig.pipeline.rejections().claimed == 1
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.name.endswith("bridge.pipeline") and r.levelno >= logging.WARNING
    ]
    assert len(warned) == 1 and f"registered to user {rig.one}" in warned[0]
    # user one's own readings are stored and judged
    rig.process(poll(rig.one, 6, 250.0))
    assert count(database, ReadingRow) == 2 and rig.firings() == [(rig.one, alert)]


def test_buffered_readings_are_replayed_only_for_their_owner(rig: Rig, database: Database) -> None:
    rig.process(poll(rig.one, 0, 70.0))
    at = T0 + timedelta(minutes=1)
    theirs = Reading(serial=SERIAL, channel=1, time=at, value=99.0, unit=F)
    mine = Reading(serial=SERIAL, channel=1, time=at + timedelta(seconds=1), value=98.0, unit=F)
    rig.buffer.extend([(rig.two, theirs), (rig.one, mine)])  # left by an outage
    rig.process(poll(rig.one, 2, 71.0))
    with database.session() as db:
        values = sorted(db.scalars(sa.select(ReadingRow.value)))
    assert values == [70.0, 71.0, 98.0]


def test_unlinking_an_account_stops_its_alerts(rig: Rig, database: Database) -> None:
    rig.process(poll(rig.one, 0, 70.0))
    with database.transaction() as db:
        db.add(ThermoWorksCredentials(user_id=rig.one, tw_email="one@cloud.example"))
    alert = rig.alert(ONE, 200.0)
    rig.process(poll(rig.one, 1, 210.0))
    assert rig.firings() == [(rig.one, alert)]
    rig.process(poll(rig.one, 2, 150.0))  # re-armed
    assert unlink_account(database, ONE)
    rig.alerts.reload_rules()
    with database.transaction() as db:  # a reading still on its way (a replay, say)
        late = Reading(serial=SERIAL, channel=1, time=T0 + timedelta(minutes=3), value=230, unit=F)
        assert rig.alerts.process(db, [late], late.time) == []
    assert rig.firings() == [(rig.one, alert)]


def cli_config(config: Config, tmp_path: Path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database": {"url": config.database.url},
                "security": {"key_file": config.security.key_file, "bcrypt_rounds": 4},
            }
        )
    )
    return str(path)


def test_a_resold_device_moves_to_its_new_owner_and_the_history_stays(
    rig: Rig,
    database: Database,
    config: Config,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rig.process(poll(rig.one, 0, 70.0))
    old_alert = rig.alert(ONE, 200.0)
    with database.transaction() as db:
        old_session = rig.sessions.start(db, SERIAL, T0 + timedelta(minutes=1))[-1]
    rig.process(poll(rig.one, 2, 210.0))
    assert rig.firings() == [(rig.one, old_alert)]
    path = cli_config(config, tmp_path)

    assert main(["--config", path, "devices", "transfer", SERIAL.lower(), "--to", TWO]) == 0
    out = capsys.readouterr().out
    assert f"{SERIAL} now belongs to {TWO} (was {ONE})" in out
    assert f"session {old_session.session.session_id} ended" in out

    new_alert = rig.alert(TWO, 220.0)
    rig.process(poll(rig.one, 3, 150.0), poll(rig.two, 3, 150.0))  # both re-arm, if judged
    rig.process(poll(rig.one, 4, 240.0))  # the seller's account still lists it: not theirs
    rig.process(poll(rig.two, 5, 240.0))
    with database.session() as db:
        times = list(db.scalars(sa.select(ReadingRow.time).order_by(ReadingRow.time)))
        sessions = {s.id: (s.user_id, s.status) for s in db.scalars(sa.select(GrillingSession))}
        row = db.scalar(sa.select(DeviceRow).where(DeviceRow.device_id == SERIAL))
        owners = set(db.scalars(sa.select(TemperatureAlert.user_id)))
    # the old readings stay; the seller's poll after the transfer is not stored
    assert [t.minute for t in times] == [0, 2, 3, 5]
    # the seller's session is theirs and ended; their alert is theirs, and silent
    assert sessions.pop(old_session.session.session_id or 0) == (rig.one, "completed")
    assert all(owner == rig.two for owner, _ in sessions.values())  # any later one: the buyer's
    assert owners == {rig.one, rig.two}
    assert rig.firings() == [(rig.one, old_alert), (rig.two, new_alert)]
    assert row is not None and row.user_id == rig.two
    # once more is a one-line error
    assert main(["--config", path, "devices", "transfer", SERIAL, "--to", TWO]) != 0
    err = capsys.readouterr().err
    assert "already belongs" in err and "Traceback" not in err


def test_two_users_polling_the_same_serial_with_the_simulator(
    make_rig: MakeRig, database: Database, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    """A second bridge user links the same ThermoWorks account: one owner per device."""
    rig = make_rig("brisket", **FAST)
    rig.run_for(10 * 60)  # the cook's account registers its devices
    with database.transaction() as db:
        second = add_user(db, TWO, "grill-password", config.security).id
    account = rig.cloud.scenario.account(PITMASTER)
    link_account(
        database, rig.config, TWO, account.password, tw_email=PITMASTER, clock=rig.cloud.now
    )
    with caplog.at_level(logging.WARNING):
        rig.bridge._next_accounts_refresh = rig.now  # pick the new link up now
        rig.run_for(2 * 3600)
    assert second in rig.bridge.pollers
    with database.session() as db:
        device_owners = set(db.scalars(sa.select(DeviceRow.user_id)))
        session_owners = set(db.scalars(sa.select(GrillingSession.user_id)))
    assert device_owners == {rig.user_id} and session_owners == {rig.user_id}
    devices = len(rig.cloud.scenario.devices)
    messages = [r.getMessage() for r in caplog.records]
    claimed = [m for m in messages if f"registered to user {rig.user_id}" in m]
    assert len(claimed) == devices  # one warning per device, however many polls
    assert not any("not published" in m for m in messages)  # never offered to the publisher
    _, report = rig.bridge.health_report()
    assert report["pipeline"]["claimed_devices"] == devices
    assert rig.bridge.publisher.health().devices == devices
    assert SIGNALS in {d.serial for d in rig.bridge.accounts[second].devices}
