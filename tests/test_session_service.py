"""The session service on SQLite and PostgreSQL: cooks stored, restarts, manual sessions from
another process (the CLI), races, rollbacks, history and export."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from grillstats_bridge.config import SessionsConfig
from grillstats_bridge.domain import Poll, Reading, Unit
from grillstats_bridge.errors import UsageError
from grillstats_bridge.sessions.model import (
    ChangeKind,
    EndReason,
    SessionChange,
    SessionStatus,
    SessionType,
)
from grillstats_bridge.sessions.service import (
    SessionService,
    export_session,
    list_sessions,
    probe_statistics,
)
from grillstats_bridge.simulator.scenario import load_scenario
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import (
    Device,
    GrillingSession,
    GrillingSessionProbe,
    SessionTrackerState,
    User,
)
from grillstats_bridge.store.readings import write_readings
from tests.session_curves import CURVES, MIN, T0, H, Run, Simulation, run_curve, scenario_polls
from tests.test_sessions import tracker

SERIAL = "SIG-1"


@pytest.fixture
def owner(database: Database) -> int:
    """A user with two devices (SIG-1, SIG-2) and another user with one (NODE-9)."""
    with database.transaction() as db:
        cook = User(email="cook@example.com", password_hash="x")
        other = User(email="other@example.com", password_hash="x")
        db.add_all([cook, other])
        db.flush()
        db.add_all(
            [
                Device(user_id=cook.id, device_id=SERIAL),
                Device(user_id=cook.id, device_id="SIG-2"),
                Device(user_id=other.id, device_id="NODE-9"),
            ]
        )
        db.flush()
        return cook.id


def service() -> SessionService:
    return SessionService(SessionsConfig())


def run(
    database: Database, svc: SessionService, polls: Iterable[Poll], store: bool = False
) -> list[SessionChange]:
    """Each poll in its own transaction, as the daemon does (readings stored first if asked)."""
    changes: list[SessionChange] = []
    for poll in polls:
        with database.transaction() as db:
            if store:
                write_readings(db, poll.readings)
            changes += svc.process(db, poll)
    return changes


def polls(sim: Simulation, until: float) -> Iterator[Poll]:
    while sim.poll_time <= until:
        yield sim.poll()


def rows(database: Database) -> list[GrillingSession]:
    with database.transaction() as db:
        return list(db.scalars(sa.select(GrillingSession).order_by(GrillingSession.id)))


def test_a_cook_is_stored_as_one_session_with_its_statistics(
    database: Database, owner: int
) -> None:
    expected = run_curve(tracker(), CURVES["hot_and_fast"], 60).finished[0]
    svc = service()
    sim = Simulation(CURVES["hot_and_fast"], 60)
    changes = run(database, svc, polls(sim, 1 * H))

    (active,) = rows(database)  # kept up to date while it runs
    assert (active.status, active.session_type, active.user_id) == ("active", "auto", owner)
    assert active.max_temperature is not None and active.max_temperature > 300
    assert active.temperature_unit == "F" and active.auto_named
    assert [c.kind for c in changes if c.kind is not ChangeKind.UPDATED] == [ChangeKind.STARTED]
    assert all(c.session.session_id == active.id for c in changes)

    changes = run(database, svc, polls(sim, CURVES["hot_and_fast"].duration))
    (done,) = rows(database)
    assert done.id == active.id
    assert (done.status, done.end_reason) == ("completed", "cooled")
    assert (done.start_time, done.end_time) == (expected.start, expected.end)
    assert done.max_temperature == round(expected.maximum or 0, 2)
    assert done.avg_temperature == round(expected.average or 0, 2)
    assert done.name == expected.name and done.name.startswith("Hot and fast · 1 h 5")
    assert changes[-1].kind is ChangeKind.ENDED and changes[-1].session.session_id == done.id
    with database.transaction() as db:
        probes = probe_statistics(db, done.id)
        assert [p.probe for p in probes] == [1, 2]
        pit = probes[0]
        assert pit.max_temperature == pytest.approx(expected.probes[0].maximum)
        assert pit.weighted_seconds == pytest.approx(expected.probes[0].weighted_seconds)
        assert db.get(SessionTrackerState, SERIAL) is not None


def test_a_restart_mid_cook_resumes_the_same_row(database: Database, owner: int) -> None:
    expected = run_curve(tracker(), CURVES["brisket"], 300).finished[0]
    sim = Simulation(CURVES["brisket"], 300)
    run(database, service(), polls(sim, 6 * H))
    (before,) = rows(database)

    restarted = service()  # a new process: nothing in memory
    with database.transaction() as db:
        assert restarted.load(db, T0 + timedelta(seconds=6 * H + 300)) == []
    run(database, restarted, polls(sim, CURVES["brisket"].duration))

    (after,) = rows(database)
    assert after.id == before.id
    assert (after.start_time, after.end_time) == (expected.start, expected.end)
    assert after.status == "completed"
    assert after.avg_temperature == pytest.approx(expected.average, abs=0.5)


def test_a_cook_that_ended_while_the_bridge_was_down_is_closed_at_start_up(
    database: Database, owner: int
) -> None:
    sim = Simulation(CURVES["brisket"], 300)
    run(database, service(), polls(sim, 4 * H))
    restarted = service()
    with database.transaction() as db:
        (change,) = restarted.load(db, T0 + timedelta(hours=30))
    assert change.kind is ChangeKind.ENDED
    assert change.session.end_reason is EndReason.OFFLINE
    (row,) = rows(database)
    assert (row.status, row.end_reason) == ("completed", "offline")
    assert row.end_time is not None and abs(row.end_time - (T0 + timedelta(hours=4))) < timedelta(
        minutes=5
    )


def test_the_bridge_restarts_with_no_tracker_state_and_still_no_duplicate(
    database: Database, owner: int
) -> None:
    """The state table lost (restored backup): the active row is adopted, not started again."""
    sim = Simulation(CURVES["brisket"], 300)
    run(database, service(), polls(sim, 5 * H))
    with database.transaction() as db:
        db.execute(sa.delete(SessionTrackerState))
    restarted = service()
    run(database, restarted, polls(sim, CURVES["brisket"].duration))
    (row,) = rows(database)
    assert row.status == "completed" and row.end_time is not None
    assert row.end_time - row.start_time > timedelta(hours=13)


def test_manual_sessions_from_the_cli_while_the_daemon_runs(database: Database, owner: int) -> None:
    daemon, cli = service(), service()
    sim = Simulation(CURVES["hot_and_fast"], 60)
    run(database, daemon, polls(sim, 20 * MIN))
    with database.transaction() as db:
        (started,) = cli.start(db, SERIAL, T0 + timedelta(minutes=20), name="Sunday chicken")
    assert started.kind is ChangeKind.STARTED
    session_id = started.session.session_id
    assert session_id is not None

    # The daemon's next poll adopts it; the cook does not start an automatic session.
    changes = run(database, daemon, polls(sim, 2 * H))
    assert changes[0].kind is ChangeKind.STARTED and changes[0].session.session_id == session_id
    assert {c.session.session_id for c in changes} == {session_id}
    (row,) = rows(database)
    assert row.session_type == "manual" and row.max_temperature is not None

    with database.transaction() as db:
        (ended,) = cli.end(db, session_id, T0 + timedelta(hours=2))
    assert ended.session.name == "Sunday chicken"
    # The daemon hears of the end, and the still-hot grill does not start a new session.
    changes = run(database, daemon, polls(sim, CURVES["hot_and_fast"].duration))
    assert [c.kind for c in changes] == [ChangeKind.ENDED]
    (row,) = rows(database)
    assert (row.status, row.end_reason) == ("completed", "manual")
    assert row.end_time == T0 + timedelta(hours=2)


def test_starting_by_hand_during_an_automatic_session_makes_it_manual(
    database: Database, owner: int
) -> None:
    daemon, cli = service(), service()
    sim = Simulation(CURVES["hot_and_fast"], 60)
    run(database, daemon, polls(sim, 1 * H))
    (auto,) = rows(database)
    with database.transaction() as db:
        (*_, change) = cli.start(db, SERIAL, T0 + timedelta(hours=1))
    assert change.kind is ChangeKind.UPDATED and change.session.session_id == auto.id
    changes = run(database, daemon, polls(sim, CURVES["hot_and_fast"].duration))
    assert not any(c.kind in (ChangeKind.ENDED, ChangeKind.STARTED) for c in changes)
    (row,) = rows(database)
    assert (row.id, row.session_type, row.status) == (auto.id, "manual", "active")
    with database.transaction() as db:
        (*_, cancelled) = daemon.cancel(db, auto.id, T0 + timedelta(hours=4))
    assert cancelled.kind is ChangeKind.CANCELLED
    assert rows(database)[0].status == "cancelled"


def test_the_daemon_takes_over_a_manual_session_started_during_its_pending_hold(
    database: Database, owner: int
) -> None:
    """A race: the CLI inserts a manual session just before the daemon confirms a cook."""
    daemon, cli = service(), service()
    sim = Simulation(CURVES["hot_and_fast"], 60)
    run(database, daemon, polls(sim, 33 * MIN))  # hot since ~31 min: pending
    assert rows(database) == []
    with database.transaction() as db:
        cli.start(db, SERIAL, T0 + timedelta(minutes=33), name="Mine")
    # Make the daemon miss the sync: it would confirm its own cook and hit the unique index.
    own: list[SessionChange] = []
    for poll in polls(sim, 40 * MIN):
        own += daemon.tracker.observe_poll(poll)
    assert any(c.kind is ChangeKind.STARTED for c in own)
    with database.transaction() as db:
        stored = daemon._persist(db, own, {SERIAL: owner}, T0 + timedelta(minutes=40))
    assert any(c.session.name == "Mine" for c in stored)
    (row,) = rows(database)
    assert (row.name, row.session_type) == ("Mine", "manual")
    active = daemon.tracker.active(SERIAL)
    assert active is not None and active.session_id == row.id


def test_only_one_active_session_per_device_whoever_writes_it(
    database: Database, owner: int
) -> None:
    values = {"user_id": owner, "device_id": SERIAL, "start_time": T0}
    with database.transaction() as db:
        db.add(GrillingSession(**values, status="completed"))
        db.add(GrillingSession(**values, status="active"))
    with pytest.raises(IntegrityError), database.transaction() as db:
        db.add(GrillingSession(**values, status="active"))
        db.flush()


def test_a_rolled_back_transaction_puts_the_tracker_back(database: Database, owner: int) -> None:
    svc = service()
    sim = Simulation(CURVES["hot_and_fast"], 60)
    run(database, svc, polls(sim, 36 * MIN))  # hot since ~31 min: pending
    assert rows(database) == []
    poll = next(polls(sim, 37 * MIN))  # confirms the cook
    with pytest.raises(RuntimeError), database.transaction() as db:
        changes = svc.process(db, poll)
        assert [c.kind for c in changes] == [ChangeKind.STARTED]
        raise RuntimeError("the database went away before the commit")
    assert svc.tracker.active(SERIAL) is None
    # The daemon retries the same poll: the session starts once, with its id bound.
    (change,) = run(database, svc, [poll])
    (row,) = rows(database)
    assert change.kind is ChangeKind.STARTED and change.session.session_id == row.id
    run(database, svc, polls(sim, CURVES["hot_and_fast"].duration))
    (row,) = rows(database)
    assert row.status == "completed"


def test_plain_readings_and_tick(database: Database, owner: int) -> None:
    svc = service()
    start = T0
    for i in range(40):
        when = start + timedelta(minutes=i)
        reading = Reading(serial="SIG-2", channel=1, time=when, value=300.0, unit=Unit.FAHRENHEIT)
        with database.transaction() as db:
            svc.process(db, [reading], when)
    (row,) = rows(database)
    assert row.device_id == "SIG-2" and row.user_id == owner
    with pytest.raises(ValueError, match="needs the time"), database.transaction() as db:
        svc.process(db, [])
    with database.transaction() as db:
        assert svc.tick(db, start + timedelta(minutes=60)) == []
        (change,) = svc.tick(db, start + timedelta(minutes=40 + 61))
    assert change.kind is ChangeKind.ENDED and change.session.end_reason is EndReason.OFFLINE
    assert rows(database)[0].status == "completed"


def test_manual_commands_that_do_not_fit_say_why(database: Database, owner: int) -> None:
    svc = service()
    now = T0
    with database.transaction() as db:
        with pytest.raises(UsageError, match="no device with serial 'NOPE'"):
            svc.start(db, "NOPE", now)
        with pytest.raises(UsageError, match="no session with id 42"):
            svc.end(db, 42, now)
        (started,) = svc.start(db, SERIAL, now)
        session_id = started.session.session_id
        assert session_id is not None
        with pytest.raises(
            UsageError, match=rf"already has an active manual session \({session_id}\)"
        ):
            svc.start(db, SERIAL, now)
        svc.end(db, session_id, now + timedelta(minutes=5))
    with (
        database.transaction() as db,
        pytest.raises(UsageError, match=f"session {session_id} is completed, not active"),
    ):
        svc.cancel(db, session_id, now)


def test_list_filters_by_user_device_and_status(database: Database, owner: int) -> None:
    svc = service()
    with database.transaction() as db:
        a = svc.start(db, SERIAL, T0)[-1].session.session_id
        b = svc.start(db, "SIG-2", T0 + timedelta(hours=1))[-1].session.session_id
        c = svc.start(db, "NODE-9", T0 + timedelta(hours=2))[-1].session.session_id
        assert a and b and c
        svc.cancel(db, b, T0 + timedelta(hours=2))
    with database.transaction() as db:
        assert [s.id for s, _ in list_sessions(db)] == [c, b, a]
        assert [s.id for s, _ in list_sessions(db, user_email="Cook@Example.com")] == [b, a]
        assert [s.id for s, _ in list_sessions(db, serial="SIG-2")] == [b]
        assert [s.id for s, _ in list_sessions(db, statuses=["active"])] == [c, a]
        assert [e for _, e in list_sessions(db, statuses=["cancelled"])] == ["cook@example.com"]
        with pytest.raises(UsageError, match="unknown status 'done'"):
            list_sessions(db, statuses=["done"])
        with pytest.raises(UsageError, match="no device with serial 'X'"):
            list_sessions(db, serial="X")
        with pytest.raises(UsageError, match="no user with email"):
            list_sessions(db, user_email="nobody@example.com")


def test_export_gives_the_sessions_readings(database: Database, owner: int) -> None:
    svc = service()
    sim = Simulation(CURVES["hot_and_fast"], 300)
    run(database, svc, polls(sim, CURVES["hot_and_fast"].duration), store=True)
    (row,) = rows(database)
    assert row.end_time is not None
    with database.transaction() as db:
        out = io.StringIO()
        count = export_session(db, row.id, "csv", out, T0 + timedelta(hours=5))
        lines = list(csv.reader(io.StringIO(out.getvalue())))
        assert lines[0] == ["time", "probe", "value", "unit"]
        assert len(lines) == count + 1 and count > 20
        times = [line[0] for line in lines[1:]]
        assert times == sorted(times)
        assert times[0] == row.start_time.isoformat() and times[-1] <= row.end_time.isoformat()

        out = io.StringIO()
        assert export_session(db, row.id, "json", out, T0 + timedelta(hours=5)) == count
        data = json.loads(out.getvalue())
    assert data["session"]["id"] == row.id and data["session"]["status"] == "completed"
    assert [p["probe"] for p in data["session"]["probes"]] == [1, 2]
    assert len(data["readings"]) == count
    assert data["readings"][0] == {
        "time": lines[1][0],
        "probe": int(lines[1][1]),
        "value": float(lines[1][2]),
        "unit": "F",
    }


def test_deleting_a_user_deletes_their_sessions_and_statistics(
    database: Database, owner: int
) -> None:
    svc = service()
    sim = Simulation(CURVES["hot_and_fast"], 300)
    run(database, svc, polls(sim, 1 * H))
    with database.transaction() as db:
        db.delete(db.get(User, owner))
    with database.transaction() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(GrillingSessionProbe)) == 0
        assert db.scalar(sa.select(sa.func.count()).select_from(GrillingSession)) == 0


def test_sessions_survive_a_full_run_on_a_restarted_service_without_duplicates(
    database: Database, owner: int
) -> None:
    """Restart at every hour of a brisket: still one session, the same as without restarts."""
    expected = run_curve(tracker(), CURVES["brisket"], 300).finished[0]
    sim = Simulation(CURVES["brisket"], 300)
    all_changes: list[SessionChange] = []
    for hour in range(1, 17):
        svc = service()
        all_changes += run(database, svc, polls(sim, hour * H))
    run_ = Run(all_changes)
    assert len(run_.started) == 1 and len(run_.finished) == 1
    (row,) = rows(database)
    assert (row.start_time, row.end_time) == (expected.start, expected.end)
    assert row.status == SessionStatus.COMPLETED and row.session_type == SessionType.AUTO


def test_the_brisket_scenario_gives_one_stored_session_per_device(database: Database) -> None:
    """Four devices of one account in the same polls (5 min): four rows, each with its probes."""
    scenario = load_scenario("brisket")
    with database.transaction() as db:
        user = User(email="pitmaster@example.com", password_hash="x")
        db.add(user)
        db.flush()
        db.add_all(Device(user_id=user.id, device_id=d.serial) for d in scenario.devices)
    svc = service()
    run(database, svc, scenario_polls(scenario, 300))
    with database.transaction() as db:
        svc.tick(db, scenario.end + timedelta(hours=2))
    found = {row.device_id: row for row in rows(database)}
    assert set(found) == {d.serial for d in scenario.devices}
    assert {r.status for r in found.values()} == {"completed"}
    assert found["M100081209"].end_reason == "unplugged"
    assert found["10:06:1C:8A:21:04"].end_reason == "offline"  # the data stopped while hot
    with database.transaction() as db:
        counts = {s: len(probe_statistics(db, row.id)) for s, row in found.items()}
        states = db.scalar(sa.select(sa.func.count()).select_from(SessionTrackerState))
    assert counts == {
        "10:06:1C:6F:47:70": 3,
        "10:06:1C:8A:21:04": 1,
        "M100081209": 4,
        "M100081210": 4,
    }
    assert states == 4


@pytest.mark.parametrize("restart_at", [47 * MIN, 63 * MIN + 30, 97 * MIN])
def test_a_restart_with_a_tracker_state_older_than_the_rows_loses_nothing(
    database: Database, owner: int, restart_at: float
) -> None:
    """At 15 s polls the tracker's state is saved every few minutes, the statistics every
    poll: after a restart they come from the rows, and nothing is counted twice."""
    expected = run_curve(tracker(), CURVES["hot_and_fast"], 15).finished[0]
    sim = Simulation(CURVES["hot_and_fast"], 15)
    run(database, service(), polls(sim, restart_at))
    with database.transaction() as db:
        saved = db.scalar(sa.select(SessionTrackerState.updated_at))
        (row,) = db.scalars(sa.select(GrillingSession))
    assert saved is not None and row.updated_at is not None and saved < row.updated_at
    run(database, service(), polls(sim, CURVES["hot_and_fast"].duration))
    (done,) = rows(database)
    assert (done.start_time, done.end_time, done.status) == (
        expected.start,
        expected.end,
        "completed",
    )
    assert done.max_temperature == round(expected.maximum or 0, 2)
    assert done.avg_temperature == pytest.approx(expected.average, abs=0.3)
    with database.transaction() as db:
        pit = probe_statistics(db, done.id)[0]
    assert pit.sample_count == expected.probes[0].samples
