"""The session tracker, pure, with an injected clock: cook curves at several poll intervals."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from grillstats_bridge.config import ConfigError, SessionsConfig, load_config
from grillstats_bridge.domain import Reading, Unit
from grillstats_bridge.sessions.model import (
    ChangeKind,
    EndReason,
    ProbeSummary,
    Rules,
    SessionChange,
    SessionError,
    SessionStatus,
    SessionType,
)
from grillstats_bridge.sessions.names import cook_kind, format_duration, session_name
from grillstats_bridge.sessions.tracker import SessionTracker
from tests.session_curves import (
    BRISKET_DONE,
    CURVES,
    HOT_DONE,
    MIN,
    SMOKE_DONE,
    T0,
    Curve,
    H,
    Run,
    Simulation,
    all_below,
    any_at_least,
    boiling_water_test,
    brisket,
    first_time,
    hot_and_fast,
    in_celsius,
    left_rest,
    run_curve,
    seconds,
    steady_smoke,
)

POLL_INTERVALS = [5, 15, 60, 300]
SERIAL = "SIG-1"


@functools.cache
def uninterrupted(name: str, poll: float) -> Run:
    return run_curve(tracker(), CURVES[name], poll)


def tracker(**settings: Any) -> SessionTracker:
    return SessionTracker(Rules.from_config(SessionsConfig(**settings)))


def lag(poll: float, curve: Curve) -> float:
    """How late the bridge can see a change: one poll plus one device push."""
    return max(poll, curve.push_interval) + curve.push_interval + 1


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def reading(
    s: float, value: float | None, channel: int = 1, unit: Unit = Unit.FAHRENHEIT
) -> Reading:
    return Reading(serial=SERIAL, channel=channel, time=at(s), value=value, unit=unit)


def feed(
    tr: SessionTracker, points: Sequence[tuple[float, float | None]], channel: int = 1
) -> list[SessionChange]:
    changes: list[SessionChange] = []
    for s, value in points:
        changes += tr.observe(SERIAL, [reading(s, value, channel)], at(s))
    return changes


# --------------------------------------------------------------------------- the curves

# (curve, sessions expected, kind of cook named, threshold crossings that bound it)
COOKS = {
    "brisket": (brisket, 0.0, BRISKET_DONE, "Low and slow"),
    "hot_and_fast": (hot_and_fast, 0.0, HOT_DONE, "Hot and fast"),
    "steady_smoke": (steady_smoke, 0.0, SMOKE_DONE, "Low and slow"),
}


@pytest.mark.parametrize("poll", POLL_INTERVALS)
@pytest.mark.parametrize("name", sorted(COOKS))
def test_a_cook_is_exactly_one_session_from_leaving_idle_to_the_last_hot_reading(
    name: str, poll: float
) -> None:
    fn, since, done, kind = COOKS[name]
    curve = CURVES[name]
    run = run_curve(tracker(), curve, poll)

    assert len(run.started) == 1
    (session,) = run.finished
    assert session.status is SessionStatus.COMPLETED
    assert session.session_type is SessionType.AUTO
    assert session.end_reason is EndReason.COOLED
    # The idle levels here are at most 75 °F: the start threshold is start_min... or idle + 50.
    start_threshold = 125.0 if name == "hot_and_fast" else 120.0
    # A push-on-change device reports a crossing only once the value moved by its delta;
    # the idle levels drift a little with the sensor noise before the cook.
    delta = curve.push_delta or 0.0
    start = first_time(fn, left_rest(fn, 10.0 - 2.0), since)
    start_late = first_time(fn, left_rest(fn, 10.0 + 2.0 + delta), since)
    assert start_late < first_time(fn, any_at_least(start_threshold), since)
    end = first_time(fn, all_below(start_threshold), done)
    end_late = first_time(fn, all_below(start_threshold - delta), done)
    assert start <= seconds(session.start) <= start_late + lag(poll, curve)
    assert end <= seconds(session.end) <= end_late + lag(poll, curve)
    assert session.name.startswith(f"{kind} · ")


@pytest.mark.parametrize("poll", POLL_INTERVALS)
@pytest.mark.parametrize("name", ["kitchen_logger", "fridge_logger"])
def test_an_idle_logger_never_starts_anything(name: str, poll: float) -> None:
    tr = tracker()
    run = run_curve(tr, CURVES[name], poll)
    assert run.changes == []
    assert tr.active_sessions() == []


def test_the_brisket_survives_its_lid_open_dips_and_the_wrap() -> None:
    """The wrap: pit to 90 °F and the meat probe out for 12 minutes; no split."""
    run = run_curve(tracker(), CURVES["brisket"], 15)
    (session,) = run.finished
    assert seconds(session.start) < 3 * H and seconds(session.end) > 13 * H
    # The pit fell far below the start threshold during the wrap, and the stats show it.
    pit = next(p for p in session.probes if p.channel == 1)
    assert pit.minimum is not None and pit.minimum < 100


@pytest.mark.parametrize("poll", POLL_INTERVALS)
def test_a_probe_checked_in_boiling_water_is_started_then_cancelled(poll: float) -> None:
    run = run_curve(tracker(), Curve("boiling", 3 * H, boiling_water_test), poll)
    assert len(run.started) == 1
    (session,) = run.finished
    assert session.status is SessionStatus.CANCELLED
    assert session.end_reason is EndReason.TOO_SHORT


def test_a_short_spike_never_starts_a_session() -> None:
    tr = tracker()
    points = [(i * 15.0, 70.0) for i in range(40)]
    points += [(600 + i * 15.0, 200.0) for i in range(19)]  # 4.5 minutes: below start_hold
    points += [(900 + i * 15.0, 70.0) for i in range(400)]
    assert feed(tr, sorted(points)) == []


def test_without_auto_detect_a_cook_is_not_a_session() -> None:
    run = run_curve(tracker(auto_detect=False), CURVES["brisket"], 60)
    assert run.changes == []


# --------------------------------------------------------------------------- offline


@pytest.mark.parametrize("poll", POLL_INTERVALS)
def test_a_short_offline_spell_mid_cook_keeps_one_session(poll: float) -> None:
    curve = dataclasses.replace(CURVES["brisket"], offline=((5 * H, 5 * H + 40 * MIN),))
    run = run_curve(tracker(), curve, poll)
    assert len(run.started) == 1
    (session,) = run.finished
    assert seconds(session.end) > 13 * H
    # Nothing is made up for the silent stretch: the pit's time-weighted span has a hole.
    pit = next(p for p in session.probes if p.channel == 1)
    assert session.end is not None
    assert pit.weighted_seconds < (session.end - session.start).total_seconds() - 35 * MIN


@pytest.mark.parametrize("poll", POLL_INTERVALS)
def test_a_long_offline_spell_ends_the_session_where_the_device_went_silent(
    poll: float,
) -> None:
    curve = dataclasses.replace(CURVES["brisket"], offline=((5 * H, 7.5 * H),))
    run = run_curve(tracker(), curve, poll)
    first, second = run.finished
    assert first.end_reason is EndReason.OFFLINE
    assert first.status is SessionStatus.COMPLETED
    assert 5 * H - lag(poll, curve) <= seconds(first.end) <= 5 * H
    assert 7.5 * H <= seconds(second.start) <= 7.5 * H + lag(poll, curve)
    assert second.end_reason is EndReason.COOLED


def test_a_device_that_stops_being_polled_is_ended_by_tick() -> None:
    tr = tracker()
    sim = Simulation(CURVES["brisket"], 15)
    sim.run(tr, until=2 * H)
    (active,) = tr.active_sessions()
    assert tr.tick(at(2 * H + 30 * MIN)) == []  # not silent long enough
    (change,) = tr.tick(at(3 * H + 1))
    assert change.kind is ChangeKind.ENDED
    assert change.session.end_reason is EndReason.OFFLINE
    assert seconds(change.session.end or T0) == pytest.approx(2 * H, abs=15)
    assert change.session.start == active.start


# --------------------------------------------------------------------------- restarts


def _restart(tr: SessionTracker) -> SessionTracker:
    """What the service does: export, store as JSON, a new process restores it."""
    stored = json.loads(json.dumps({s: tr.export_state(s) for s in tr.serials()}))
    fresh = SessionTracker(tr.rules)
    for serial, state in stored.items():
        fresh.restore_state(serial, state)
    return fresh


@pytest.mark.parametrize("poll", [15, 300])
@pytest.mark.parametrize(
    "restart_at",
    [12 * MIN + 30, 14 * MIN, 2 * H, BRISKET_DONE - 1, 7 * H + 5 * MIN, BRISKET_DONE + 1 * H],
    ids=["before-start", "pending", "cooking", "done", "wrap-dip", "cooling"],
)
def test_a_restart_resumes_the_same_session(poll: float, restart_at: float) -> None:
    curve = CURVES["brisket"]
    straight = uninterrupted("brisket", poll)

    sim = Simulation(curve, poll)
    first = tracker()
    changes = sim.run(first, until=restart_at)
    second = _restart(first)
    changes += sim.run(second)
    run = Run(changes)

    assert len(run.started) == 1
    (session,) = run.finished
    (expected,) = straight.finished
    # The bridge's downtime counts as the device being offline: a restart inside
    # the start_hold window starts the hold again, later.
    assert seconds(expected.start) <= seconds(session.start)
    assert seconds(session.start) <= max(seconds(expected.start), restart_at) + lag(poll, curve)
    assert session.end == expected.end
    assert session.maximum == expected.maximum
    assert session.average == pytest.approx(expected.average, abs=0.5)


def test_a_long_bridge_outage_closes_the_session_by_the_offline_rule() -> None:
    sim = Simulation(CURVES["brisket"], 15)
    first = tracker()
    changes = sim.run(first, until=3 * H)
    second = _restart(first)
    # The bridge comes back 2 h later (the cook went on meanwhile).
    changes += sim.run(second, skip=5 * H)
    run = Run(changes)
    before, after = run.finished
    assert before.end_reason is EndReason.OFFLINE
    assert seconds(before.end) == pytest.approx(3 * H, abs=15)
    assert 5 * H <= seconds(after.start) <= 5 * H + 30
    assert seconds(after.end) > 13 * H


def test_a_short_bridge_outage_is_invisible() -> None:
    sim = Simulation(CURVES["brisket"], 15)
    first = tracker()
    changes = sim.run(first, until=3 * H)
    second = _restart(first)
    changes += sim.run(second, skip=3 * H + 25 * MIN)
    run = Run(changes)
    assert len(run.started) == 1
    (session,) = run.finished
    assert seconds(session.end) > 13 * H


def test_after_a_restart_tick_closes_a_cook_that_ended_while_the_bridge_was_down() -> None:
    sim = Simulation(CURVES["brisket"], 15)
    first = tracker()
    sim.run(first, until=12 * H)
    second = _restart(first)
    (change,) = second.tick(at(20 * H))
    assert change.kind is ChangeKind.ENDED
    assert change.session.end_reason is EndReason.OFFLINE
    assert seconds(change.session.end or T0) == pytest.approx(12 * H, abs=15)


def test_state_rejects_an_unknown_version() -> None:
    tr = tracker()
    feed(tr, [(0, 70.0)])
    state = tr.export_state(SERIAL) | {"v": 99}
    with pytest.raises(ValueError, match="version 99"):
        tracker().restore_state(SERIAL, state)


# --------------------------------------------------------------------------- manual sessions


def test_a_manual_session_suspends_detection_until_it_ends() -> None:
    tr = tracker()
    sim = Simulation(CURVES["brisket"], 15)
    changes = sim.run(tr, until=5 * MIN)
    started = tr.start_manual(SERIAL, at(5 * MIN), name="Brisket for Sam")
    assert started.kind is ChangeKind.STARTED
    changes += sim.run(tr)  # the whole cook and two hours of cooling
    assert all(c.session.session_type is SessionType.MANUAL for c in changes)
    assert not any(c.kind is ChangeKind.STARTED for c in changes)
    ended = tr.end(SERIAL, at(16 * H))
    assert ended.kind is ChangeKind.ENDED
    session = ended.session
    assert session.name == "Brisket for Sam"
    assert session.end_reason is EndReason.MANUAL
    assert session.start == at(5 * MIN) and session.end == at(16 * H)
    assert session.maximum is not None and session.maximum > 240


def test_ending_by_hand_while_hot_waits_for_the_device_to_cool_before_detecting_again() -> None:
    tr = tracker()
    sim = Simulation(CURVES["brisket"], 15)
    sim.run(tr, until=1 * H)
    tr.start_manual(SERIAL, at(1 * H))
    sim.run(tr, until=6 * H)
    tr.end(SERIAL, at(6 * H))
    rest = sim.run(tr)  # still cooking for hours: no automatic session
    assert rest == []
    # The next day's cook on the same device is detected again.
    changes = Simulation(CURVES["hot_and_fast"], 15, origin=24 * H).run(tr)
    assert [c.kind for c in changes if c.kind is not ChangeKind.UPDATED] == [
        ChangeKind.STARTED,
        ChangeKind.ENDED,
    ]


def test_starting_by_hand_during_an_automatic_session_makes_it_manual() -> None:
    tr = tracker()
    sim = Simulation(CURVES["hot_and_fast"], 15)
    sim.run(tr, until=1 * H)
    (auto,) = tr.active_sessions()
    change = tr.start_manual(SERIAL, at(1 * H), name="Chicken")
    assert change.kind is ChangeKind.UPDATED
    assert change.session.session_type is SessionType.MANUAL
    assert change.session.start == auto.start and change.session.name == "Chicken"
    # The cooldown no longer ends it: only a person does.
    rest = sim.run(tr)
    assert all(c.kind is ChangeKind.UPDATED for c in rest)
    cancelled = tr.end(SERIAL, at(4 * H), cancel=True)
    assert cancelled.kind is ChangeKind.CANCELLED
    assert cancelled.session.status is SessionStatus.CANCELLED


def test_manual_commands_that_do_not_fit_are_refused() -> None:
    tr = tracker()
    with pytest.raises(SessionError, match="no active session"):
        tr.end(SERIAL, at(0))
    tr.start_manual(SERIAL, at(0))
    with pytest.raises(SessionError, match="already has an active manual session"):
        tr.start_manual(SERIAL, at(60))
    with pytest.raises(SessionError, match="at most 100 characters"):
        tracker().start_manual(SERIAL, at(0), name="x" * 101)


def test_a_manual_session_gets_a_generated_name_that_is_completed_at_the_end() -> None:
    tr = tracker(timezone="America/Chicago")
    started = tr.start_manual(SERIAL, at(0))
    assert started.session.name == "Manual cook · Sat 11 Jul 2026 09:00"
    assert started.session.auto_named
    feed(tr, [(i * 60.0, 350.0) for i in range(91)])
    ended = tr.end(SERIAL, at(90 * MIN))
    assert ended.session.name == "Hot and fast · 1 h 30 min · Sat 11 Jul 2026"


# --------------------------------------------------------------------------- statistics


def test_the_mean_is_time_weighted_not_per_sample() -> None:
    """An hour at 100 °F read every 15 s, an hour at 200 °F read every 10 min (RFX-style)."""
    tr = tracker()
    tr.start_manual(SERIAL, at(0))
    points = [(i * 15.0, 100.0) for i in range(241)]  # 0 .. 3600
    points += [(3600 + 1 + i * 600.0, 200.0) for i in range(7)]  # 3601 .. 7201
    feed(tr, points)
    session = tr.end(SERIAL, at(7201)).session
    per_sample = (241 * 100 + 7 * 200) / 248
    assert per_sample < 106
    assert session.average == pytest.approx((100 * 3600 + 150 * 1 + 200 * 3600) / 7201)
    (probe,) = session.probes
    assert probe.samples == 248 and probe.weighted_seconds == pytest.approx(7201)
    assert (probe.minimum, probe.maximum) == (100.0, 200.0)


def test_an_unplugged_stretch_is_not_averaged_over() -> None:
    tr = tracker()
    tr.start_manual(SERIAL, at(0))
    feed(tr, [(0, 100.0), (600, 100.0), (660, None), (3000, 300.0), (3600, 300.0)])
    (probe,) = tr.end(SERIAL, at(3600)).session.probes
    assert probe.weighted_seconds == pytest.approx(1200)
    assert probe.average == pytest.approx(200.0)


def test_the_session_mean_pools_every_probe_by_the_time_it_was_plugged_in() -> None:
    tr = tracker()
    tr.start_manual(SERIAL, at(0))
    feed(tr, [(i * 60.0, 250.0) for i in range(61)], channel=1)
    feed(tr, [(1800 + i * 60.0, 100.0) for i in range(31)], channel=2)
    session = tr.end(SERIAL, at(3600)).session
    assert session.average == pytest.approx((250 * 3600 + 100 * 1800) / 5400)
    assert (session.minimum, session.maximum) == (100.0, 250.0)
    assert [p.channel for p in session.probes] == [1, 2]


def test_statistics_stop_when_the_cook_does() -> None:
    """The cooldown after the last hot reading is not part of the session's statistics."""
    run = run_curve(tracker(), CURVES["hot_and_fast"], 15)
    (session,) = run.finished
    pit = next(p for p in session.probes if p.channel == 1)
    assert pit.last_time is not None and session.end is not None
    assert pit.last_time <= session.end
    assert pit.last_value is not None and 100 < pit.last_value < 125


def test_replayed_readings_change_nothing() -> None:
    tr = tracker()
    tr.start_manual(SERIAL, at(0))
    points = [(i * 60.0, 200.0 + i) for i in range(10)]
    feed(tr, points)
    before = tr.active(SERIAL)
    assert feed(tr, points) == []  # nothing new: not even an update
    assert tr.active(SERIAL) == before


def test_readings_in_any_order_give_the_same_session() -> None:
    ordered, shuffled = tracker(), tracker()
    ordered.start_manual(SERIAL, at(0))
    shuffled.start_manual(SERIAL, at(0))
    points = [reading(i * 60.0, 150.0 + (i % 7) * 10) for i in range(1, 30)]
    ordered.observe(SERIAL, points, at(1800))
    shuffled.observe(SERIAL, points[::-1], at(1800))
    assert ordered.active(SERIAL) == shuffled.active(SERIAL)


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize("poll", [15, 300])
def test_a_celsius_device_cooks_the_same_and_keeps_its_unit(poll: float) -> None:
    fahrenheit = uninterrupted("brisket", poll)
    curve = dataclasses.replace(CURVES["brisket"], channels=in_celsius(brisket), unit=Unit.CELSIUS)
    celsius = run_curve(tracker(), curve, poll)
    (f,) = fahrenheit.finished
    (c,) = celsius.finished
    assert (c.start, c.end) == (f.start, f.end)
    assert c.unit is Unit.CELSIUS and f.unit is Unit.FAHRENHEIT
    assert c.maximum == pytest.approx((f.maximum - 32) * 5 / 9)  # type: ignore[operator]
    assert all(p.unit is Unit.CELSIUS for p in c.probes)


def test_thresholds_in_celsius_work_on_fahrenheit_devices() -> None:
    run = run_curve(
        tracker(temperature_unit="C", start_rise=28, start_min=49, end_margin=11, idle_max=38),
        CURVES["brisket"],
        60,
    )
    assert len(run.finished) == 1


def test_a_unit_switch_mid_cook_is_converted_not_a_drop() -> None:
    tr = tracker()
    feed(tr, [(i * 60.0, 250.0) for i in range(60)])
    changes: list[SessionChange] = []
    for i in range(60, 240):
        changes += tr.observe(SERIAL, [reading(i * 60.0, 121.1, unit=Unit.CELSIUS)], at(i * 60.0))
    assert not any(c.kind in (ChangeKind.ENDED, ChangeKind.CANCELLED) for c in changes)
    session = tr.active(SERIAL)
    assert session is not None and session.unit is Unit.FAHRENHEIT
    assert session.minimum == pytest.approx(250.0, abs=0.1)


def test_humidity_channels_are_ignored() -> None:
    tr = tracker()
    changes: list[SessionChange] = []
    for i in range(200):
        changes += tr.observe(
            SERIAL, [reading(i * 60.0, 130.0, channel=2, unit=Unit.HUMIDITY)], at(i * 60.0)
        )
    assert changes == []
    tr.start_manual(SERIAL, at(200 * 60))
    tr.observe(SERIAL, [reading(200 * 60 + 60, 95.0, channel=2, unit=Unit.HUMIDITY)], at(12100))
    session = tr.active(SERIAL)
    assert session is not None and session.probes == ()


def test_a_nan_value_is_an_unplugged_probe() -> None:
    tr = tracker()
    tr.start_manual(SERIAL, at(0))
    feed(tr, [(0, 200.0), (60, math.nan), (120, 200.0)])
    (probe,) = tr.end(SERIAL, at(120)).session.probes
    assert probe.samples == 2 and probe.weighted_seconds == 0


# --------------------------------------------------------------------------- names and rules


def test_names_say_the_kind_the_length_and_the_local_date() -> None:
    def probe(avg: float, unit: Unit = Unit.FAHRENHEIT) -> ProbeSummary:
        return ProbeSummary(
            channel=1,
            label=None,
            unit=unit,
            samples=1,
            minimum=avg,
            maximum=avg,
            average=avg,
            weighted_seconds=0,
            first_time=None,
            last_time=None,
            last_value=avg,
        )

    assert cook_kind([probe(450)]) == "Grilling"
    assert cook_kind([probe(165), probe(148.9, Unit.CELSIUS)]) == "Hot and fast"  # 300 °F
    assert cook_kind([probe(240)]) == "Low and slow"
    assert cook_kind([probe(140)]) == "Cook"
    assert cook_kind([]) == "Cook"
    assert format_duration(timedelta(minutes=45)) == "45 min"
    assert format_duration(timedelta(hours=3, seconds=20)) == "3 h"
    assert format_duration(timedelta(hours=12, minutes=29, seconds=40)) == "12 h 30 min"
    start = datetime(2026, 7, 11, 23, 30, tzinfo=UTC)
    paris = ZoneInfo("Europe/Paris")
    assert session_name(SessionType.AUTO, start, paris) == "Cook · Sun 12 Jul 2026 01:30"
    assert (
        session_name(
            SessionType.AUTO, start, paris, end=start + timedelta(hours=14), probes=[probe(250)]
        )
        == "Low and slow · 14 h · Sun 12 Jul 2026"
    )


def test_the_sessions_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"end_margin: must be smaller than sessions\.start_rise"):
        SessionsConfig(start_rise=20, end_margin=20).validate()
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        SessionsConfig(timezone="Mars/Olympus").validate()


def test_the_sessions_settings_load_with_durations(tmp_path: Any) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("sessions:\n  end_after: 45m\n  start_hold: 2m\n  temperature_unit: c\n")
    config = load_config(path, environ={"GRILLSTATS_SESSIONS_MIN_DURATION": "20m"})
    rules = Rules.from_config(config.sessions)
    sessions = rules.config
    assert (sessions.end_after, sessions.start_hold, sessions.min_duration) == (2700, 120, 1200)
    assert rules.unit is Unit.CELSIUS


def test_an_unplug_stamped_with_the_last_readings_time_still_counts() -> None:
    """The cloud may keep a channel's time when its probe is pulled (the bridge then sends
    value None at the last reading's time): the probe is out, the cook can end."""
    tr = tracker()
    feed(tr, [(i * 60.0, 250.0) for i in range(60)])
    assert tr.active(SERIAL) is not None
    changes = tr.observe(SERIAL, [reading(59 * 60.0, None)], at(3600))
    changes += tr.observe(SERIAL, [reading(59 * 60.0, None)], at(3600 + 1800))  # a replay
    (ended,) = [c for c in changes if c.kind is ChangeKind.ENDED]
    assert ended.session.end_reason is EndReason.UNPLUGGED
    assert ended.session.end == at(59 * 60.0)


def test_the_running_sessions_without_probes_are_the_snapshots_less_their_summaries() -> None:
    # What the daemon reads of every running session after each transaction: cheap.
    tr = tracker()
    Simulation(CURVES["brisket"], 15).run(tr, until=3 * H)
    full = tr.active_sessions()
    assert full and full[0].probes
    assert tr.active_sessions(probes=False) == [dataclasses.replace(s, probes=()) for s in full]
    assert tr.active_serials() == [s.serial for s in full]


def test_a_running_session_shows_its_duration_in_whole_minutes() -> None:
    # Compared to what was published after each transaction: equal within the minute.
    from grillstats_bridge.sessions.entities import current_session

    tr = tracker()
    Simulation(CURVES["brisket"], 15).run(tr, until=3 * H)
    (snapshot,) = tr.active_sessions(probes=False)
    early = current_session(snapshot, snapshot.start + timedelta(minutes=42, seconds=1))
    late = current_session(snapshot, snapshot.start + timedelta(minutes=42, seconds=59.9))
    assert early == late
    assert early.duration == timedelta(minutes=42)
    assert current_session(snapshot, snapshot.start + timedelta(minutes=43)) != late
