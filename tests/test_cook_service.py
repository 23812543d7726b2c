"""The cook service on SQLite and PostgreSQL, through the pipeline: targets from the alerts,
stalls stored on the session, a restart rebuilt from stored readings, rollbacks."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from grillstats_bridge.alerts.rules import set_alert_method
from grillstats_bridge.alerts.service import AlertService
from grillstats_bridge.bridge.pipeline import Pipeline
from grillstats_bridge.config import AlertsConfig, CookConfig, SessionsConfig
from grillstats_bridge.cook.figures import TRUSTED
from grillstats_bridge.cook.model import CookEventKind, CookState, CookStep, Estimate, Method
from grillstats_bridge.cook.service import CookService
from grillstats_bridge.domain import Device, Measurement, Poll, Probe, Reading, Unit
from grillstats_bridge.sessions.service import SessionService
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import (
    GrillingSession,
    SessionCookProbe,
    TemperatureAlert,
    User,
)
from grillstats_bridge.store.readings import ReadingBuffer, write_readings
from tests.test_cook import MIN, T0, H, brisket

SERIAL = "10:06:1C:6F:47:70"


@pytest.fixture
def owner(database: Database) -> int:
    """A user with a target alert of 203 °F on channel 2."""
    with database.transaction() as db:
        user = User(email="cook@example.com", password_hash="x")
        db.add(user)
        db.flush()
        db.add(
            TemperatureAlert(
                user_id=user.id,
                device_id=SERIAL,
                probe_id="2",
                alert_type="target",
                target_temperature=203.0,
                temperature_unit="F",
            )
        )
        return user.id


def pipeline(database: Database, cook: CookService | None = None) -> Pipeline:
    return Pipeline(
        database,
        sessions=SessionService(SessionsConfig()),
        alerts=AlertService(AlertsConfig()),
        buffer=ReadingBuffer(1000),
        cook=cook or CookService(CookConfig()),
    )


def poll(owner: int, t: float) -> Poll:
    when = T0 + timedelta(seconds=t)
    meat, pit = brisket(t), 250.0
    probes = (
        Probe(serial=SERIAL, channel=1, label="Pit", value=pit, last_telemetry_saved=when),
        Probe(serial=SERIAL, channel=2, label="Brisket", value=meat, last_telemetry_saved=when),
    )
    device = Device(
        serial=SERIAL, type="signals", last_seen=when, last_telemetry_saved=when, probes=probes
    )
    readings = tuple(
        Reading(serial=SERIAL, channel=p.channel, time=when, value=p.value, unit=Unit.FAHRENHEIT)
        for p in probes
    )
    return Poll(user_id=owner, polled_at=when, devices=(device,), readings=readings)


def cook(
    pipe: Pipeline, owner: int, start: float, end: float, every: float = 2 * MIN
) -> list[CookStep]:
    steps: list[CookStep] = []
    t = start
    while t <= end:
        outcome = pipe.process([poll(owner, t)], T0 + timedelta(seconds=t))
        assert outcome.database_ok and outcome.rejected == 0
        steps += outcome.cook
        t += every
    return steps


def session_stall(database: Database) -> tuple[datetime | None, datetime | None, float | None]:
    with database.transaction() as db:
        row = db.execute(
            sa.select(
                GrillingSession.stall_start,
                GrillingSession.stall_end,
                GrillingSession.stall_seconds,
            )
        ).one()
        return row.stall_start, row.stall_end, row.stall_seconds


def test_targets_come_from_the_alerts_and_the_stall_lands_on_the_session(
    database: Database, owner: int
) -> None:
    pipe = pipeline(database)
    steps = cook(pipe, owner, 0, 8 * H)
    estimates = [e for s in steps for e in s.estimates]
    assert estimates and all(e.key == (SERIAL, 2) and e.target == 203.0 for e in estimates)
    assert any(e.method is Method.NEWTON for e in estimates)  # channel 1 is the pit
    kinds = [e.kind for s in steps for e in s.events]
    assert kinds == [CookEventKind.STALL_STARTED, CookEventKind.STALL_ENDED]
    start, end, seconds = session_stall(database)
    assert start is not None and end is not None and seconds is not None
    assert abs(start - (T0 + timedelta(hours=4))) <= timedelta(minutes=10)
    assert timedelta(0) <= end - (T0 + timedelta(hours=7)) <= timedelta(minutes=35)
    assert seconds == pytest.approx((end - start).total_seconds())


def test_a_restart_rebuilds_the_estimate_from_stored_readings(
    database: Database, owner: int
) -> None:
    before = cook(pipeline(database), owner, 0, 5 * H)
    last = before[-1].estimates[0]
    assert last.stalled
    after = cook(pipeline(database), owner, 5 * H + 2 * MIN, 5 * H + 2 * MIN)
    (estimate,) = after[0].estimates
    assert after[0].events == ()  # the stall is not announced twice
    assert estimate.state is CookState.STALLED
    assert estimate.stall_started == last.stall_started
    assert estimate.progress is not None and last.progress is not None
    assert estimate.progress == pytest.approx(last.progress, abs=1.0)
    assert session_stall(database)[0] == last.stall_started


def test_a_stall_found_while_the_bridge_was_down_goes_on_the_session(
    database: Database, owner: int
) -> None:
    cook(pipeline(database), owner, 0, 4 * H)
    late = range(int(4 * H), int(4 * H + 50 * MIN), 120)  # stored, but by another bridge run
    with database.transaction() as db:
        write_readings(db, [r for t in late for r in poll(owner, t).readings])
    assert session_stall(database)[0] is None
    cook(pipeline(database), owner, 4 * H + 50 * MIN, 4 * H + 50 * MIN)
    start = session_stall(database)[0]
    assert start is not None
    assert abs(start - (T0 + timedelta(hours=4))) <= timedelta(minutes=10)


def test_a_rolled_back_batch_is_counted_once(database: Database, owner: int) -> None:
    service = CookService(CookConfig())
    pipe = pipeline(database, service)
    cook(pipe, owner, 0, 4 * H + 20 * MIN)
    stall_poll = None
    t = 4 * H + 22 * MIN
    while stall_poll is None:  # find the poll that starts the stall, without keeping it
        probe = service.tracker.checkpoint([SERIAL])
        try:
            with database.transaction() as db:
                step = service.process(
                    db,
                    poll(owner, t).readings,
                    poll(owner, t).devices,
                    {(SERIAL, 2): Measurement(203.0, Unit.FAHRENHEIT)},
                    T0 + timedelta(seconds=t),
                )
                if step.events:
                    stall_poll = t
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        assert service.tracker.checkpoint([SERIAL]).keys() == probe.keys()
        if stall_poll is None:
            cook(pipe, owner, t, t)
            t += 2 * MIN
    steps = cook(pipe, owner, stall_poll, stall_poll)
    assert [e.kind for e in steps[0].events] == [CookEventKind.STALL_STARTED]
    assert session_stall(database)[0] is not None


def test_the_figures_are_written_when_they_change_and_again_after_a_rollback(
    database: Database, owner: int
) -> None:
    service = CookService(CookConfig())
    cook(pipeline(database, service), owner, 0, 2 * H)
    last = service.last[(SERIAL, 2)]
    later = dataclasses.replace(last, done_at=(last.done_at or T0) + timedelta(hours=1))

    def save(estimate: Estimate) -> int:
        with database.transaction() as db:
            return service.figures.save(db, [estimate], (), T0 + 3 * timedelta(hours=1))

    def stored() -> tuple[datetime | None, datetime]:
        with database.transaction() as db:
            row = db.execute(sa.select(SessionCookProbe.done_at, SessionCookProbe.updated_at))
            done_at, updated_at = row.one()
            return done_at, updated_at

    written = stored()
    assert written[0] == last.done_at
    assert save(last) == 0 and stored() == written  # unchanged: not written again
    with pytest.raises(RuntimeError), database.transaction() as db:
        assert service.figures.save(db, [later], (), T0 + 3 * timedelta(hours=1)) == 1
        raise RuntimeError("roll back")
    assert stored() == written
    assert save(later) == 1  # the rolled back write is not taken for written
    assert stored() == (later.done_at, T0 + 3 * timedelta(hours=1))


def test_figures_another_process_wrote_are_read_again_after_a_while(
    database: Database, owner: int
) -> None:
    service = CookService(CookConfig())
    cook(pipeline(database, service), owner, 0, 2 * H)
    last = service.last[(SERIAL, 2)]
    later = dataclasses.replace(last, done_at=(last.done_at or T0) + timedelta(hours=1))
    ready = T0 + timedelta(hours=1)
    with database.transaction() as db:  # as the process polling the device meanwhile would
        db.execute(sa.update(SessionCookProbe).values(ready_at=ready))
    with database.transaction() as db:
        now = T0 + timedelta(seconds=2 * H) + 2 * TRUSTED
        assert service.figures.save(db, [later], (), now) == 1
    with database.transaction() as db:
        assert db.scalar(sa.select(SessionCookProbe.ready_at)) == ready
        assert db.scalar(sa.select(SessionCookProbe.done_at)) == later.done_at


def test_a_declared_reverse_sear_is_read_from_the_target_alert_also_after_a_restart(
    database: Database, owner: int
) -> None:
    with database.transaction() as db:
        alert = db.scalars(sa.select(TemperatureAlert)).one()
        alert.target_temperature = 130.0  # a steak's: 30 °F/h from 40 °F, there at 3 h
    plain = cook(pipeline(database), owner, 0, 2 * H)[-1].estimates[0]
    with database.transaction() as db:
        set_alert_method(db, alert.id, "reverse_sear")
    pipe = pipeline(database)  # a restart: the method comes from the database
    (told,) = cook(pipe, owner, 2 * H + 2 * MIN, 2 * H + 2 * MIN)[0].estimates
    assert plain.done_at is not None and told.done_at is not None and told.past_cooks == 0
    # the configured sear: at 115 °F (half an hour away, a little more toward a 250 °F pit),
    # then 8 min to the target
    expected = T0 + timedelta(hours=2.5, minutes=8)
    assert timedelta(0) <= told.done_at - expected <= timedelta(minutes=6)
    assert told.done_at < plain.done_at - timedelta(minutes=15)
    with database.transaction() as db:
        set_alert_method(db, alert.id, "auto")
    (again,) = cook(pipe, owner, 2 * H + 4 * MIN, 2 * H + 4 * MIN)[0].estimates
    assert again.done_at is not None and again.done_at > told.done_at + timedelta(minutes=15)
