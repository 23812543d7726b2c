"""The alert service on the real databases (SQLite and PostgreSQL): state, history, outbox."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from grillstats_bridge.alerts import rules as alert_rules
from grillstats_bridge.alerts.engine import AlertRuleError, Arm, Firing
from grillstats_bridge.alerts.service import AlertService
from grillstats_bridge.config import AlertsConfig, SecurityConfig
from grillstats_bridge.domain import FiringEvent, Measurement, Reading, Unit
from grillstats_bridge.errors import UsageError
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import AlertHistory, AlertStateRow, Device, TemperatureAlert
from grillstats_bridge.store.readings import write_readings
from grillstats_bridge.store.users import add_user

F, C = Unit.FAHRENHEIT, Unit.CELSIUS
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PIT = "pit@example.com"
OTHER = "other@example.com"
CONFIG = AlertsConfig(cooldown=0)


@pytest.fixture
def db(database: Database) -> Database:
    """Two users; SIG1 belongs to the first, SIG2 to the second."""
    with database.transaction() as session:
        rounds = SecurityConfig(bcrypt_rounds=4)
        pit = add_user(session, PIT, "correct horse battery", rounds)
        other = add_user(session, OTHER, "correct horse battery", rounds)
        session.add_all(
            [
                Device(user_id=pit.id, device_id="SIG1", nickname="Signals"),
                Device(user_id=other.id, device_id="SIG2"),
            ]
        )
    return database


def add(db: Database, **kwargs: Any) -> int:
    values: dict[str, Any] = {"serial": "SIG1", "probe": 1, **kwargs}
    with db.transaction() as session:
        return alert_rules.add_alert(session, PIT, **values).id


def readings(
    values: Sequence[float | None],
    *,
    start: datetime = T0,
    interval: float = 15,
    serial: str = "SIG1",
    channel: int = 1,
    unit: Unit = F,
) -> list[Reading]:
    return [
        Reading(
            serial=serial,
            channel=channel,
            time=start + timedelta(seconds=i * interval),
            value=v,
            unit=unit,
        )
        for i, v in enumerate(values)
    ]


def poll(db: Database, service: AlertService, batch: Sequence[Reading]) -> list[Firing]:
    """What the daemon does: store the new readings and judge them in one transaction."""
    with db.transaction() as session:
        write_readings(session, batch)  # a replayed reading is stored once
        return service.process(session, batch, now=max(r.time for r in batch))


def live(db: Database, service: AlertService, batch: Sequence[Reading]) -> list[Firing]:
    """One poll per reading."""
    out: list[Firing] = []
    for reading in batch:
        out += poll(db, service, [reading])
    return out


def history_rows(db: Database) -> list[AlertHistory]:
    with db.transaction() as session:
        return list(session.scalars(sa.select(AlertHistory).order_by(AlertHistory.id)))


# --------------------------------------------------------------------------- firing and storing


def test_a_firing_is_stored_as_history_and_outbox(db: Database) -> None:
    alert_id = add(db, kind="target", target=203, name="Brisket")
    service = AlertService(CONFIG)
    firings = live(db, service, readings([190, 200, 203.4, 204]))

    assert len(firings) == 1
    firing = firings[0]
    assert firing.id is not None
    assert (firing.alert_id, firing.event, firing.value) == (
        alert_id,
        FiringEvent.TARGET_REACHED,
        203.4,
    )
    (row,) = history_rows(db)
    assert row.id == firing.id
    assert (row.alert_id, row.user_id, row.device_id, row.probe) == (alert_id, 1, "SIG1", 1)
    assert (row.alert_type, row.event_type, row.alert_name) == (
        "target",
        "target_reached",
        "Brisket",
    )
    assert (row.value, row.unit, row.threshold, row.change) == (203.4, "F", 203.0, None)
    assert row.fired_at == T0 + timedelta(seconds=30)
    assert row.published_at is None
    with db.transaction() as session:
        alert = alert_rules.get_alert(session, alert_id)
        assert alert.last_triggered == T0 + timedelta(seconds=30)
        state = session.get(AlertStateRow, alert_id)
        assert state is not None
        assert (state.arm, state.last_fired) == ("fired", T0 + timedelta(seconds=30))
    assert service.active_probes() == {("SIG1", 1)}


def test_last_triggered_is_not_an_edit(db: Database) -> None:
    alert_id = add(db, kind="target", target=203)
    with db.transaction() as session:
        before = alert_rules.get_alert(session, alert_id).updated_at
    live(db, AlertService(CONFIG), readings([190, 205]))
    with db.transaction() as session:
        alert = alert_rules.get_alert(session, alert_id)
        assert alert.last_triggered is not None
        assert alert.updated_at == before


def test_outbox_gives_firings_in_order_until_published(db: Database) -> None:
    """The broker is down for a while: firings wait, go out in order, each once."""
    add(db, kind="target", target=203)
    add(db, kind="range", low=225, high=275)
    service = AlertService(CONFIG)
    firings = live(db, service, readings([190, 230, 280, 260, 220, 180, 210]))
    assert [f.event for f in firings] == [
        FiringEvent.TARGET_REACHED,
        FiringEvent.TOO_HIGH,
        FiringEvent.TOO_LOW,
        FiringEvent.TARGET_REACHED,
    ]
    with db.transaction() as session:
        first = service.pending(session, limit=3)
        assert [f.id for f in first] == [f.id for f in firings[:3]]
        assert first[0] == firings[0]  # the same firing, read back from the outbox
        assert service.mark_published(session, [f.id for f in first if f.id], at=T0) == 3
    with db.transaction() as session:
        rest = service.pending(session)
        assert [f.id for f in rest] == [firings[3].id]
        assert service.mark_published(session, [f.id for f in first if f.id]) == 0  # once only
        assert service.mark_published(session, []) == 0
    assert [r.published_at for r in history_rows(db)] == [T0, T0, T0, None]


# --------------------------------------------------------------------------- restart, rollback


def test_restart_does_not_fire_a_condition_again(db: Database) -> None:
    add(db, kind="target", target=203)
    add(db, kind="range", low=225, high=275, probe=2)
    first = AlertService(CONFIG)
    batch = readings([190, 205, 206])
    probe2 = readings([240, 290, 291], channel=2)
    assert len(live(db, first, batch[:2]) + live(db, first, probe2[:2])) == 2

    restarted = AlertService(CONFIG)
    # The first poll after a restart hands over the last readings again, then new ones.
    assert poll(db, restarted, [batch[1], probe2[1]]) == []
    assert live(db, restarted, [batch[2], probe2[2]]) == []
    later = T0 + timedelta(minutes=5)
    firings = live(db, restarted, readings([200, 204], start=later))  # re-armed, fired
    assert [f.event for f in firings] == [FiringEvent.TARGET_REACHED]
    assert len(history_rows(db)) == 3


def test_restart_primes_rate_windows_from_stored_readings(db: Database) -> None:
    add(db, kind="rising", threshold=15)
    first = AlertService(CONFIG)
    live(db, first, readings([150.0] * 20))  # 4 3/4 minutes of flat readings
    restarted = AlertService(CONFIG)
    jump = readings([170.0], start=T0 + timedelta(minutes=5))
    (firing,) = poll(db, restarted, jump)  # judged at once: the window is covered
    assert (firing.event, firing.change) == (FiringEvent.RISING, 20.0)


def test_an_unplugged_probe_survives_a_restart(db: Database) -> None:
    """Unplugged (not stored) then plugged in cold: no 'falling', even across a restart."""
    add(db, kind="falling", threshold=20)
    first = AlertService(CONFIG)
    live(db, first, readings([200.0] * 10 + [None] * 2))
    restarted = AlertService(CONFIG)
    assert live(db, restarted, readings([70.0] * 5, start=T0 + timedelta(minutes=4))) == []


def test_a_rolled_back_poll_is_judged_again_when_retried(db: Database) -> None:
    add(db, kind="target", target=203)
    service = AlertService(CONFIG)
    live(db, service, readings([190]))
    batch = readings([205], start=T0 + timedelta(minutes=1))
    with pytest.raises(RuntimeError), db.transaction() as session:
        assert len(service.process(session, batch, now=batch[0].time)) == 1
        raise RuntimeError("the database went away before commit")
    assert history_rows(db) == []
    retried = poll(db, service, batch)
    assert len(retried) == 1
    assert len(history_rows(db)) == 1
    assert poll(db, service, batch) == []  # and never twice


def test_a_rolled_back_savepoint_inside_a_committed_poll_keeps_the_work(db: Database) -> None:
    add(db, kind="target", target=203)
    service = AlertService(CONFIG)
    batch = readings([190, 205])
    with db.transaction() as session:
        assert len(service.process(session, batch, now=batch[-1].time)) == 1
        with pytest.raises(RuntimeError), session.begin_nested():
            raise RuntimeError("some other step failed in its savepoint")
    assert poll(db, service, batch) == []
    assert len(history_rows(db)) == 1


# --------------------------------------------------------------------------- rule changes


def test_alerts_added_elsewhere_are_picked_up_after_the_reload_interval(db: Database) -> None:
    service = AlertService(AlertsConfig(cooldown=0, reload_interval=10))
    assert live(db, service, readings([200])) == []
    add(db, kind="target", target=203)  # from the CLI, another process
    assert poll(db, service, readings([210], start=T0 + timedelta(seconds=5))) == []
    (firing,) = poll(db, service, readings([211], start=T0 + timedelta(seconds=15)))
    assert firing.value == 211


def test_a_removed_alert_still_held_by_the_daemon_does_not_break_the_poll(db: Database) -> None:
    alert_id = add(db, kind="target", target=203, name="Gone")
    service = AlertService(AlertsConfig(cooldown=0, reload_interval=60))
    live(db, service, readings([190]))
    with db.transaction() as session:
        alert_rules.remove_alert(session, alert_id)
    firings = poll(db, service, readings([205], start=T0 + timedelta(seconds=15)))
    assert [f.alert_id for f in firings] == [alert_id]  # not reloaded yet: still judged
    assert [(r.alert_id, r.alert_name) for r in history_rows(db)] == [(alert_id, "Gone")]
    assert poll(db, service, readings([190, 210], start=T0 + timedelta(minutes=2))) == []
    with db.transaction() as session:
        assert session.scalars(sa.select(AlertStateRow)).all() == []


def test_disable_and_enable_start_the_alert_afresh(db: Database) -> None:
    alert_id = add(db, kind="target", target=203)
    service = AlertService(CONFIG)
    assert len(live(db, service, readings([205]))) == 1
    for active in (False, True):
        with db.transaction() as session:
            alert_rules.set_alert_active(session, alert_id, active)
        service.reload_rules()
        poll(db, service, readings([206], start=T0 + timedelta(minutes=1 + active)))
    # re-enabled while above the target: fired again on the next reading after enabling
    assert [r.value for r in history_rows(db)] == [205, 206]


def test_humidity_and_broken_rows_are_reported_once(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    add(db, kind="target", target=203)
    with db.transaction() as session:
        session.add_all(
            [
                TemperatureAlert(user_id=1, device_id="SIG1", probe_id="x", alert_type="target"),
                TemperatureAlert(user_id=1, device_id="SIG1", probe_id="2", alert_type="ramp"),
                TemperatureAlert(
                    user_id=1,
                    device_id="SIG1",
                    probe_id="3",
                    alert_type="target",
                    target_temperature=50,
                ),
            ]
        )
    service = AlertService(CONFIG)
    with caplog.at_level(logging.WARNING, logger="grillstats_bridge.alerts.service"):
        live(db, service, readings([60, 70], channel=3, unit=Unit.HUMIDITY))
        firings = live(db, service, readings([190, 205]))
    assert len(firings) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "alerts: skipped: alert 2: probe 'x' is not a number",
        "alerts: skipped: alert 3: unknown alert type 'ramp' "
        "(expected target, range, rising or falling)",
        "alerts: alert 4 is on a humidity channel and is never evaluated; "
        "remove it ('grillstats-bridge alert remove')",
    ]


# --------------------------------------------------------------------------- database work


@pytest.fixture
def statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.split()[0].upper())

    event.listen(db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(db.engine, "before_cursor_execute", record)


def test_a_quiet_poll_costs_no_query_whatever_its_size(db: Database, statements: list[str]) -> None:
    for probe in range(1, 5):
        add(db, kind="target", target=203, probe=probe)
        add(db, kind="rising", threshold=30, probe=probe)
    service = AlertService(AlertsConfig(cooldown=0, reload_interval=3600))
    with db.transaction() as session:
        service.load(session, now=T0)
    batch = [r for probe in range(1, 5) for r in readings([150.0] * 100, channel=probe)]
    statements.clear()
    with db.transaction() as session:
        assert service.process(session, batch, now=T0 + timedelta(minutes=30)) == []
    assert [s for s in statements if s not in {"BEGIN", "COMMIT"}] == []


def test_a_poll_with_firings_is_a_few_batched_statements(
    db: Database, statements: list[str]
) -> None:
    for probe in range(1, 5):
        add(db, kind="target", target=203, probe=probe)
    service = AlertService(AlertsConfig(cooldown=0, reload_interval=3600))
    with db.transaction() as session:
        service.load(session, now=T0)
    batch = [r for probe in range(1, 5) for r in readings([190, 204, 205], channel=probe)]
    statements.clear()
    with db.transaction() as session:
        assert len(service.process(session, batch, now=T0 + timedelta(minutes=1))) == 4
    work = [s for s in statements if s not in {"BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"}]
    # One state upsert, the history insert, one last_triggered update. PostgreSQL
    # inserts the history in one batch; SQLite (in-process) takes a row per firing.
    assert work.count("UPDATE") == 1
    assert work.count("INSERT") == (2 if db.dialect == "postgresql" else 1 + 4)
    assert "SELECT" not in work


# --------------------------------------------------------------------------- probe targets (HA)


def test_probe_target_create_change_clear(db: Database) -> None:
    service = AlertService(CONFIG)
    with db.transaction() as session:
        service.load(session, now=T0)
        alert = alert_rules.set_probe_target(session, "SIG1", 2, 95, "C")
        assert alert is not None
        assert (alert.user_id, alert.name, alert.alert_type) == (1, "Probe 2 target", "target")
        first_id = alert.id
    service.reload_rules()
    live(db, service, readings([200, 204], channel=2))
    assert service.targets() == {("SIG1", 2): Measurement(95, C)}
    with db.transaction() as session:
        assert alert_rules.probe_targets(session) == {("SIG1", 2): Measurement(95, C)}
        same = alert_rules.set_probe_target(session, "SIG1", 2, 95, C)
        assert same is not None and same.id == first_id
        assert session.get(AlertStateRow, first_id) is not None  # unchanged: state kept
        changed = alert_rules.set_probe_target(session, "SIG1", 2, 203, F)
        assert changed is not None and changed.id == first_id
        assert changed.temperature_unit == "F"
        assert session.get(AlertStateRow, first_id) is None  # a new target starts afresh
    with db.transaction() as session:
        assert alert_rules.set_probe_target(session, "SIG1", 2, 0, F) is None
        assert alert_rules.set_probe_target(session, "SIG1", 2, None, F) is None
        assert alert_rules.probe_targets(session) == {}
    service.reload_rules()
    poll(db, service, readings([150], channel=2, start=T0 + timedelta(minutes=1)))
    assert service.targets() == {}


@pytest.mark.parametrize(
    ("serial", "probe", "value", "unit", "message"),
    [
        ("NOPE", 1, 203, "F", "no device with serial 'NOPE'"),
        ("SIG1", 12, 203, "F", "probe: must be 1 to 9, got 12"),
        ("SIG1", 1, 203, "K", "unit: unknown unit 'K'"),
        ("SIG1", 1, 203, "H", "the unit must be F or C, not humidity"),
        ("SIG1", 1, float("inf"), "F", "target: not a finite number"),
    ],
)
def test_probe_target_errors(
    db: Database, serial: str, probe: int, value: float, unit: str, message: str
) -> None:
    with db.transaction() as session, pytest.raises(UsageError) as info:
        alert_rules.set_probe_target(session, serial, probe, value, unit)
    assert message in str(info.value)


def test_probe_range_create_change_reenable_clear(db: Database) -> None:
    service = AlertService(CONFIG)
    with db.transaction() as session:
        service.load(session, now=T0)
        alert = alert_rules.set_probe_range(session, "SIG1", 3, 100, 120, "C")
        assert alert is not None
        assert (alert.name, alert.alert_type, alert.temperature_unit) == (
            "Probe 3 range",
            "range",
            "C",
        )
        first_id = alert.id
    service.reload_rules()
    live(db, service, readings([220, 230], channel=3))
    wanted = {("SIG1", 3): (Measurement(100, C), Measurement(120, C))}
    assert service.ranges() == wanted
    with db.transaction() as session:
        assert alert_rules.probe_ranges(session) == wanted
        same = alert_rules.set_probe_range(session, "SIG1", 3, 100, 120, C)
        assert same is not None and same.id == first_id
        assert session.get(AlertStateRow, first_id) is not None  # unchanged: state kept
        with pytest.raises(AlertRuleError, match=r"min \(120\) must be below max \(120\)"):
            alert_rules.set_probe_range(session, "SIG1", 3, 120, 120, C)
    with db.transaction() as session:
        alert_rules.set_alert_active(session, first_id, False)
        assert alert_rules.probe_ranges(session) == {}  # a disabled one is not shown
        again = alert_rules.set_probe_range(session, "SIG1", 3, 200, 250, F)
        assert again is not None and again.id == first_id and again.is_active
        assert (again.min_temperature, again.max_temperature) == (200, 250)
    with db.transaction() as session:
        assert alert_rules.set_probe_range(session, "SIG1", 3, 200, 0, F) is None
        assert alert_rules.probe_range_alert(session, "SIG1", 3) is None
    service.reload_rules()
    poll(db, service, readings([150], channel=3, start=T0 + timedelta(minutes=1)))
    assert service.ranges() == {}


def test_saved_states_match_what_the_engine_exports(db: Database) -> None:
    alert_id = add(db, kind="range", low=225, high=275)
    service = AlertService(CONFIG)
    live(db, service, readings([240, 280]))
    with db.transaction() as session:
        saved = alert_rules.alert_states(session, [alert_id])
    assert saved[alert_id] == service.engine.state(alert_id)
    assert (saved[alert_id].arm, saved[alert_id].low_arm) == (Arm.FIRED, Arm.ARMED)
