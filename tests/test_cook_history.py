"""Learning from past cooks on SQLite and PostgreSQL, through the pipeline: a cook that
reaches its target leaves its lesson on the session; once the session ends, the next
cook of the same person is calibrated by it; past sessions change the estimate and its
count, survive a restart, and another user's sessions do not count."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa

from grillstats_bridge.cook.model import CookEvent, CookEventKind, Estimate
from grillstats_bridge.domain import Device, Poll, Probe, Reading, Unit
from grillstats_bridge.sessions.model import ChangeKind, SessionStatus
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import GrillingSession, User
from tests.test_cook import MIN, T0, H, brisket
from tests.test_cook_service import SERIAL, cook, owner, pipeline

__all__ = ["owner"]  # the fixture


def poll_of(user: int, t: float, meat: float, pit: float = 250.0) -> Poll:
    when = T0 + timedelta(seconds=t)
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
    return Poll(user_id=user, polled_at=when, devices=(device,), readings=readings)


def past_session(
    db: sa.orm.Session, user: int, *, serial: str = SERIAL, target: float, stall_h: float
) -> None:
    end = T0 - timedelta(days=3)
    start = end - timedelta(hours=12)
    stall = start + timedelta(hours=4)
    db.add(
        GrillingSession(
            user_id=user,
            device_id=serial,
            status=SessionStatus.COMPLETED.value,
            start_time=start,
            end_time=end,
            stall_start=stall,
            stall_end=stall + timedelta(hours=stall_h),
            stall_seconds=stall_h * H,
            cook_probe=2,
            cook_target=target,
            cook_unit="F",
            cook_done_at=end - timedelta(hours=1),
            cook_pace=1.0,
            cook_climb_pace=0.7,
        )
    )


def test_past_sessions_change_the_estimate_and_its_count_and_survive_a_restart(
    database: Database, owner: int
) -> None:
    first = cook(pipeline(database), owner, 0, 4 * H + 50 * MIN)[-1].estimates[0]
    assert first.stalled and first.past_cooks == 0 and first.done_at is not None
    with database.transaction() as db:
        stranger = User(email="someone@example.com", password_hash="x")
        db.add(stranger)
        db.flush()
        past_session(db, owner, target=203.0, stall_h=1.5)
        past_session(db, owner, target=200.0, stall_h=1.5)
        past_session(db, owner, target=130.0, stall_h=9.0)  # a steak: not similar
        past_session(db, stranger.id, target=203.0, stall_h=9.0)  # not theirs
    # a restart: the tracker rebuilt from stored readings, the calibration from the sessions
    steps = cook(pipeline(database), owner, 4 * H + 52 * MIN, 4 * H + 52 * MIN)
    (after,) = steps[0].estimates
    assert after.stalled and after.past_cooks == 2 and after.done_at is not None
    # the usual stall: (2 x 1.5 h + the configured 3 h) / 3 = 2 h, an hour less
    earlier = first.done_at - after.done_at
    assert abs(earlier - timedelta(hours=1)) <= timedelta(minutes=5)


def test_a_cook_done_teaches_the_next_one(database: Database, owner: int) -> None:
    pipe = pipeline(database)
    estimates: list[Estimate] = []
    ready: list[CookEvent] = []
    ended = False

    def run(t0: float, t1: float, meat: Callable[[float], float], pit: float = 250.0) -> None:
        nonlocal ended
        t = t0
        while t <= t1:
            outcome = pipe.process([poll_of(owner, t, meat(t), pit)], T0 + timedelta(seconds=t))
            assert outcome.database_ok
            for step in outcome.cook:
                estimates.extend(step.estimates)
                ready.extend(e for e in step.events if e.kind is CookEventKind.READY)
            ended |= any(c.kind is ChangeKind.ENDED for c in outcome.session_changes)
            t += 4 * MIN

    run(0, 10.5 * H, brisket)
    assert len(ready) == 1 and all(e.past_cooks == 0 for e in estimates)
    with database.transaction() as db:
        row = db.execute(sa.select(GrillingSession)).scalar_one()
        assert (row.cook_probe, row.cook_target, row.cook_unit) == (2, 203.0, "F")
        assert row.cook_done_at == ready[0].at
        assert row.cook_climb_pace == pytest.approx(13.0 / 30.0, rel=0.15)  # brisket()
        assert row.cook_pace is not None and row.stall_seconds is not None
    run(10.5 * H + 4 * MIN, 14 * H, lambda t: 70.0, pit=70.0)  # cooled, the cook ends
    assert ended
    estimates.clear()
    second = 15 * H
    run(second, second + 2 * H, lambda t: brisket(t - second))
    assert estimates and all(e.past_cooks == 1 for e in estimates)
