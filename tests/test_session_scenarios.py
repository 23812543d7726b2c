"""The session rule tuned on the simulator's shipped scenarios, at 5 s, 15 s, 1 min and 5 min
polls with an injected clock: each cook is one session per device, of about the right length;
the idle loggers give none."""

from __future__ import annotations

import functools
from datetime import timedelta

import pytest

from grillstats_bridge.config import SessionsConfig
from grillstats_bridge.domain import Unit
from grillstats_bridge.sessions.model import (
    ChangeKind,
    EndReason,
    Rules,
    SessionChange,
    SessionSnapshot,
    SessionStatus,
)
from grillstats_bridge.sessions.tracker import SessionTracker
from grillstats_bridge.simulator.scenario import Scenario, load_scenario
from tests.session_curves import MIN, H, scenario_polls

POLL_INTERVALS = [5, 15, 60, 300]
SIGNALS, GATEWAY = "10:06:1C:6F:47:70", "10:06:1C:8A:21:04"
MEAT_FLAT, MEAT_POINT = "M100081209", "M100081210"


@functools.cache
def simulate(name: str, every: float) -> tuple[Scenario, tuple[SessionChange, ...]]:
    """Poll the whole scenario; then the simulator stops, and the bridge's clock runs on
    until the offline rule has closed whatever the data left running."""
    scenario = load_scenario(name)
    rules = Rules.from_config(SessionsConfig())
    tracker = SessionTracker(rules)
    changes: list[SessionChange] = []
    for poll in scenario_polls(scenario, every):
        changes += tracker.observe_poll(poll)
    quiet = rules.config.offline_end_after + every
    changes += tracker.tick(scenario.end + timedelta(seconds=quiet))
    assert tracker.active_sessions() == []
    return scenario, tuple(changes)


def sessions(name: str, every: float) -> dict[str, SessionSnapshot]:
    """The one finished session of each device (fails on a second one, or a split)."""
    _, changes = simulate(name, every)
    started = [c.serial for c in changes if c.kind is ChangeKind.STARTED]
    finished = [c.session for c in changes if c.kind in (ChangeKind.ENDED, ChangeKind.CANCELLED)]
    assert sorted(started) == sorted(s.serial for s in finished)
    assert len(set(started)) == len(started), f"a device had two sessions: {started}"
    return {s.serial: s for s in finished}


def hours(scenario: Scenario, s: SessionSnapshot) -> tuple[float, float, float]:
    assert s.end is not None
    start = (s.start - scenario.start).total_seconds() / H
    end = (s.end - scenario.start).total_seconds() / H
    return start, end, end - start


def late(every: float) -> float:
    """How late a poller can see a change, in hours: one poll plus one push."""
    return (every + 15) / H


# Per device: when the cook starts (h), when it ends (h), why, and its expected length (h).
BRISKET = {
    # The pit probes read 150 °F when the data stops at 13 h: still cooking by the rule,
    # so the session ends where the data does.
    SIGNALS: ((0.0, 0.1), (12.9, 13.0), EndReason.OFFLINE),
    GATEWAY: ((0.0, 0.1), (12.9, 13.0), EndReason.OFFLINE),
    # Meat-only RFX probes: dated from when the meat left its fridge temperature, not from
    # when it passed the start threshold hours later; ended when pulled at 12 h 5 m.
    MEAT_FLAT: ((0.4, 0.7), (12 + 5 / 60, 12 + 5 / 60), EndReason.UNPLUGGED),
    MEAT_POINT: ((0.5, 0.8), (12 + 5 / 60, 12 + 5 / 60), EndReason.UNPLUGGED),
}


@pytest.mark.parametrize("every", POLL_INTERVALS)
def test_brisket_is_one_session_per_device_of_about_twelve_hours(every: float) -> None:
    scenario, _ = simulate("brisket", every)
    found = sessions("brisket", every)
    assert set(found) == set(BRISKET)
    for serial, ((start_lo, start_hi), (end_lo, end_hi), reason) in BRISKET.items():
        s = found[serial]
        start, end, length = hours(scenario, s)
        assert start_lo <= start <= start_hi + late(every), (serial, start)
        assert end_lo - late(every) <= end <= end_hi + late(every), (serial, end)
        assert 11.3 <= length <= 13.0, (serial, length)
        assert (s.status, s.end_reason) == (SessionStatus.COMPLETED, reason)
        # A meat probe alone cannot tell the pit's temperature: just "Cook".
        kind = "Cook" if serial in (MEAT_FLAT, MEAT_POINT) else "Low and slow"
        assert s.name.startswith(f"{kind} · 1"), s.name


@pytest.mark.parametrize("every", POLL_INTERVALS)
def test_brisket_statistics_follow_the_pit_and_the_meat(every: float) -> None:
    found = sessions("brisket", every)
    pit = next(p for p in found[GATEWAY].probes if p.channel == 1)
    assert pit.maximum is not None and 245 <= pit.maximum <= 260
    # The lid openings at 5 h and 8 h pull the pit far below its 241-246 °F.
    assert pit.minimum is not None and pit.minimum < 170
    assert pit.average is not None and 225 <= pit.average <= 245
    signals = found[SIGNALS]
    assert [p.channel for p in signals.probes] == [1, 2, 3]  # channel 4: never plugged in
    assert signals.minimum is not None and signals.minimum < 45  # the brisket from the fridge
    flat = found[MEAT_FLAT]
    assert flat.maximum is not None and 215 <= flat.maximum <= 222  # the +15 °F sensing point


@pytest.mark.parametrize("every", POLL_INTERVALS)
def test_hot_and_fast_is_one_session(every: float) -> None:
    scenario, _ = simulate("hot_and_fast", every)
    (s,) = sessions("hot_and_fast", every).values()
    start, end, length = hours(scenario, s)
    assert start <= 0.1 + late(every)
    # The kettle still reads 190 °F when the data stops at 2 h 30 m.
    assert 2.5 - late(every) <= end <= 2.5 and 2.3 <= length <= 2.5
    assert s.name.startswith("Hot and fast · 2 h")


@pytest.mark.parametrize("every", POLL_INTERVALS)
@pytest.mark.parametrize("name", ["kitchen_logger", "fridge_logger"])
def test_an_idle_logger_gives_no_session(name: str, every: float) -> None:
    _, changes = simulate(name, every)
    assert changes == ()


@pytest.mark.parametrize("every", POLL_INTERVALS)
def test_a_celsius_roast_keeps_its_unit(every: float) -> None:
    scenario, _ = simulate("celsius_roast", every)
    (s,) = sessions("celsius_roast", every).values()
    start, _, length = hours(scenario, s)
    assert start <= 0.1 + late(every) and 2.3 <= length <= 2.5
    assert s.unit is Unit.CELSIUS and all(p.unit is Unit.CELSIUS for p in s.probes)
    assert s.maximum is not None and 180 <= s.maximum <= 190


@pytest.mark.parametrize("every", POLL_INTERVALS)
def test_the_rough_night_cook_survives_ten_minutes_offline(every: float) -> None:
    scenario, _ = simulate("rough_night", every)
    (s,) = sessions("rough_night", every).values()
    start, end, _ = hours(scenario, s)
    assert start <= 0.1 + late(every) and end >= 2 - late(every) - 10 * MIN / H
