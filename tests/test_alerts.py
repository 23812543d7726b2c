"""The pure alert engine: plain readings and an injected clock in, firings out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from grillstats_bridge.alerts.engine import (
    AlertEngine,
    AlertKind,
    AlertRule,
    AlertRuleError,
    AlertSettings,
    Arm,
    Firing,
)
from grillstats_bridge.config import AlertsConfig
from grillstats_bridge.domain import FiringEvent, Reading, Unit
from grillstats_bridge.simulator.scenario import load_scenario

F, C, H = Unit.FAHRENHEIT, Unit.CELSIUS, Unit.HUMIDITY
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SERIAL = "AB12CD"
NO_COOLDOWN = AlertSettings(AlertsConfig(cooldown=0))

Value = float | None


def readings(
    values: Sequence[Value],
    interval: float = 15.0,
    *,
    unit: Unit = F,
    start: datetime = T0,
    channel: int = 1,
) -> list[Reading]:
    """One reading per value, ``interval`` seconds apart."""
    return [
        Reading(
            serial=SERIAL,
            channel=channel,
            time=start + timedelta(seconds=i * interval),
            value=v,
            unit=unit,
        )
        for i, v in enumerate(values)
    ]


def timed(points: Sequence[tuple[float, Value]], *, unit: Unit = F) -> list[Reading]:
    """Readings at explicit offsets (seconds from T0)."""
    return [
        Reading(serial=SERIAL, channel=1, time=T0 + timedelta(seconds=s), value=v, unit=unit)
        for s, v in points
    ]


def live(engine: AlertEngine, batch: Sequence[Reading]) -> list[Firing]:
    """Feed readings one poll at a time, the clock reading each one's time (a live daemon)."""
    out: list[Firing] = []
    for reading in batch:
        out += engine.process([reading], now=reading.time)
    return out


def target(value: float, unit: Unit = F) -> AlertRule:
    return AlertRule(id=1, serial=SERIAL, channel=1, kind=AlertKind.TARGET, unit=unit, target=value)


def range_(low: float, high: float, unit: Unit = F) -> AlertRule:
    return AlertRule(
        id=2, serial=SERIAL, channel=1, kind=AlertKind.RANGE, unit=unit, low=low, high=high
    )


def rate(kind: AlertKind, threshold: float, unit: Unit = F) -> AlertRule:
    return AlertRule(id=3, serial=SERIAL, channel=1, kind=kind, unit=unit, threshold=threshold)


def fired_at(firings: Sequence[Firing], batch: Sequence[Reading]) -> list[int]:
    """Indexes of the readings that fired (firings carry the reading's time)."""
    times = [r.time for r in batch]
    return [times.index(f.time) for f in firings]


# --------------------------------------------------------------------------- target


@dataclass(frozen=True)
class Case:
    name: str
    rule: AlertRule
    values: Sequence[Value]
    fires_at: list[int]  # indexes into values
    unit: Unit = F
    settings: AlertSettings = NO_COOLDOWN


TARGET_CASES = [
    Case("climbs through the target", target(203), [150, 190, 202.9, 203.0, 205, 206], [3]),
    Case("jumps over the target", target(203), [150, 210, 215], [1]),
    Case(
        "noise around the target fires once (2 °F hysteresis)",
        target(203),
        [201.5, 203.1, 202.4, 203.6, 201.2, 203.0, 202.1, 204],
        [1],
    ),
    Case(
        "re-arms below target - 2 °F, fires again",
        target(203),
        [190, 203, 200.9, 203.5],
        [1, 3],
    ),
    Case("201.0 is not below target - 2 °F", target(203), [190, 203, 201.0, 204], [1]),
    Case("created while above: fires on the first reading", target(203), [210, 211], [0]),
    Case(
        "created while above, cooling, heating again",
        target(203),
        [210, 205, 200, 203],
        [0, 3],
    ),
    Case("never reached", target(203), [150, 180, 202.99, 190], []),
    Case(
        "unplugged: no alarm, no re-arm",
        target(203),
        [200, None, None, 204, None, 205],
        [3],
    ),
    Case(
        "°F alert, °C probe (203 °F = 95 °C)",
        target(203),
        [90.0, 94.9, 95.0, 94.0, 95.5, 93.8, 95.1],
        [2, 6],  # 94.0 °C = 201.2 °F does not re-arm; 93.8 °C = 200.84 °F does
        unit=C,
    ),
    Case(
        "°C alert, °F probe (95 °C = 203 °F, 1 °C hysteresis)",
        target(95, C),
        [190.0, 202.9, 203.0, 201.5, 204, 201.1, 203.5],
        [2, 6],  # 201.5 °F = 94.17 °C does not re-arm; 201.1 °F = 93.94 °C does
        unit=F,
    ),
    Case(
        "hysteresis 0: every crossing fires",
        target(203),
        [202, 203, 202.9, 203],
        [1, 3],
        settings=AlertSettings(AlertsConfig(hysteresis_f=0, cooldown=0)),
    ),
    Case(
        "cooldown delays a second firing while the target holds",
        target(203),
        # 15 s apart, 5 min cooldown: re-armed at 2, reached at 3 (too soon)...
        [190, 203, 200, 204, *[204] * 17, 205, 206],
        [1, 21],  # ... fired at the first reading 300 s after the first firing
        settings=AlertSettings(),
    ),
    Case(
        "cooldown: a second crossing that ends before the cooldown is dropped",
        target(203),
        [190, 203, 200, 204, 199, *[199] * 30],
        [1],
        settings=AlertSettings(),
    ),
]


@pytest.mark.parametrize("case", TARGET_CASES, ids=lambda c: c.name)
def test_target(case: Case) -> None:
    engine = AlertEngine([case.rule], case.settings)
    batch = readings(case.values, unit=case.unit)
    firings = live(engine, batch)
    assert fired_at(firings, batch) == case.fires_at
    assert all(f.event is FiringEvent.TARGET_REACHED for f in firings)


def test_target_firing_says_what_happened_in_the_alerts_unit() -> None:
    engine = AlertEngine([replace(target(95, C), name="Brisket done", user_id=7)], NO_COOLDOWN)
    (firing,) = live(engine, readings([200, 203.4], unit=F))
    assert firing.alert_id == 1
    assert firing.user_id == 7
    assert firing.name == "Brisket done"
    assert firing.kind is AlertKind.TARGET
    assert (firing.serial, firing.channel) == (SERIAL, 1)
    assert firing.time == T0 + timedelta(seconds=15)
    assert firing.value == 95.22  # 203.4 °F in °C, rounded
    assert (firing.unit, firing.threshold) == (C, 95)
    assert engine.is_active(1)
    assert engine.active_probes() == {(SERIAL, 1)}


# --------------------------------------------------------------------------- range

PIT_RANGE = range_(225, 275)


def events(firings: Sequence[Firing]) -> list[str]:
    return [f.event.value for f in firings]


@dataclass(frozen=True)
class RangeCase:
    name: str
    values: Sequence[Value]
    expected: list[tuple[int, str]]  # (index, event)
    rule: AlertRule = PIT_RANGE
    unit: Unit = F
    interval: float = 15.0


RANGE_CASES = [
    RangeCase("warming up below min: silent", [70, 120, 180, 220, 224], []),
    RangeCase(
        "warms up, then the fire dies",
        [70, 150, 230, 250, 240, 224.9],
        [(5, "too_low")],
    ),
    RangeCase(
        "low side arms only inside by the margin (noise at min while warming)",
        [220, 225.5, 224.5, 226.9, 224.0, 227.0, 226, 224.5],
        [(7, "too_low")],
    ),
    RangeCase("created above max: too high at once", [300, 310], [(0, "too_high")]),
    RangeCase(
        "noise around max fires once",
        [250, 275.5, 274.5, 276, 273.5, 275.2, 272.9, 276],
        [(1, "too_high"), (7, "too_high")],  # re-armed at 272.9 (<= 275 - 2)
    ),
    RangeCase(
        "both sides, each once",
        [250, 280, 260, 220, 230, 290],
        [(1, "too_high"), (3, "too_low"), (5, "too_high")],
    ),
    RangeCase(
        "unplugged and plugged back in cold: no too-low",
        [250, 240, None, 70, 80, 230, 220],
        [(6, "too_low")],
    ),
    RangeCase(
        "unplugged while too hot: no second too-high until re-armed",
        [250, 290, None, 290, 260, 290],
        [(1, "too_high"), (5, "too_high")],
    ),
    RangeCase(
        "°F range, °C probe",
        [100.0, 110.0, 136.0, 120.0, 106.0],  # 110 °C = 230 °F arms; 136 °C = 276.8 °F
        [(2, "too_high"), (4, "too_low")],  # 106 °C = 222.8 °F
        unit=C,
    ),
    RangeCase(
        "°C range, °F probe",
        [200, 230, 260, 285.0, 270, 215],  # range 107-135 °C = 224.6-275 °F
        [(3, "too_high"), (5, "too_low")],
        rule=range_(107, 135, C),
    ),
    RangeCase(
        "a narrow range still re-arms (margin capped at half its width)",
        [226, 228, 226, 228],  # 225-227 °F: margin 1 °F
        [(1, "too_high"), (3, "too_high")],
        rule=range_(225, 227),
    ),
]


@pytest.mark.parametrize("case", RANGE_CASES, ids=lambda c: c.name)
def test_range(case: RangeCase) -> None:
    engine = AlertEngine([case.rule], NO_COOLDOWN)
    batch = readings(case.values, case.interval, unit=case.unit)
    firings = live(engine, batch)
    assert list(zip(fired_at(firings, batch), events(firings), strict=True)) == case.expected


def test_range_gap_makes_the_low_side_wait() -> None:
    """Device off for an hour: a cold first reading is no alarm; inside again re-arms."""
    engine = AlertEngine([range_(225, 275)], NO_COOLDOWN)
    batch = timed([(0, 250), (15, 245), (3615, 80), (3630, 150), (3645, 240), (3660, 200)])
    firings = live(engine, batch)
    assert [(f.time, f.event) for f in firings] == [
        (T0 + timedelta(seconds=3660), FiringEvent.TOO_LOW)
    ]


def test_range_short_gap_keeps_the_low_side_armed() -> None:
    engine = AlertEngine([range_(225, 275)], NO_COOLDOWN)
    batch = timed([(0, 250), (600, 200)])  # 10 min < max_gap (15 min)
    assert events(live(engine, batch)) == ["too_low"]


def test_range_active_while_violated() -> None:
    engine = AlertEngine([range_(225, 275)], NO_COOLDOWN)
    live(engine, readings([250, 280]))
    assert engine.is_active(2)
    live(engine, readings([272.5], start=T0 + timedelta(minutes=1)))
    assert not engine.is_active(2)
    assert engine.active_probes() == set()


# --------------------------------------------------------------------------- rising / falling

INTERVALS = [5, 15, 60, 150, 300]


def ramp(interval: float, *, flat_min: float, rate_per_min: float, ramp_min: float) -> list[Value]:
    """Flat at 150 °F, then a steady ramp, then flat again."""
    values: list[Value] = []
    total = flat_min + ramp_min + 15
    t = 0.0
    while t <= total * 60:
        minutes = t / 60
        into = min(max(minutes - flat_min, 0), ramp_min)
        values.append(150 + rate_per_min * into)
        t += interval
    return values


@pytest.mark.parametrize("interval", INTERVALS)
@pytest.mark.parametrize(
    ("kind", "sign", "event"),
    [(AlertKind.RISING, 1, FiringEvent.RISING), (AlertKind.FALLING, -1, FiringEvent.FALLING)],
)
def test_rate_ramp_fires_once_whatever_the_sampling(
    interval: float, kind: AlertKind, sign: int, event: FiringEvent
) -> None:
    """4 °F/min for 10 min, threshold 15 °F in 5 min: the change over 5 minutes reaches
    15 °F 3.75 min into the ramp; each interval notices at its first sample after that."""
    engine = AlertEngine([rate(kind, 15)], NO_COOLDOWN)
    values = ramp(interval, flat_min=10, rate_per_min=4 * sign, ramp_min=10)
    batch = readings(values, interval)
    firings = live(engine, batch)
    assert [f.event for f in firings] == [event]
    expected = T0 + timedelta(minutes=10 + 3.75)
    assert expected <= firings[0].time < expected + timedelta(seconds=interval)
    assert firings[0].change is not None and firings[0].change >= 15


@pytest.mark.parametrize("interval", INTERVALS)
def test_rate_slower_than_threshold_never_fires(interval: float) -> None:
    engine = AlertEngine([rate(AlertKind.RISING, 15)], NO_COOLDOWN)
    batch = readings(ramp(interval, flat_min=10, rate_per_min=2.9, ramp_min=60), interval)
    assert live(engine, batch) == []


@pytest.mark.parametrize("interval", INTERVALS)
def test_rate_noise_never_fires(interval: float) -> None:
    engine = AlertEngine([rate(AlertKind.RISING, 10), rate_rule_falling(10)], NO_COOLDOWN)
    values = [225 + (4 if i % 2 else -4) * (1 if i % 3 else 0.5) for i in range(200)]
    assert live(engine, readings(values, interval)) == []


def rate_rule_falling(threshold: float) -> AlertRule:
    return replace(rate(AlertKind.FALLING, threshold), id=4)


@pytest.mark.parametrize("interval", INTERVALS)
def test_rate_step_fires_once_the_window_is_covered(interval: float) -> None:
    """A 30 °F jump right at the start: nothing is known of the past, so the engine waits
    until its readings span most of the window (and then the jump is still inside it)."""
    engine = AlertEngine([rate(AlertKind.RISING, 20)], NO_COOLDOWN)
    values: list[Value] = [150, *[180] * int(600 / interval)]
    batch = readings(values, interval)
    firings = live(engine, batch)
    assert len(firings) == 1
    assert firings[0].time - T0 >= timedelta(seconds=240)


def test_rate_needs_readings_spanning_most_of_the_window() -> None:
    """Ten-minute sampling cannot measure a five-minute rate: never judged."""
    engine = AlertEngine([rate(AlertKind.FALLING, 10)], NO_COOLDOWN)
    assert live(engine, readings([300, 250, 200, 150, 100], 600)) == []


def test_rate_jittered_five_minute_polls() -> None:
    engine = AlertEngine([rate(AlertKind.RISING, 15)], NO_COOLDOWN)
    batch = timed([(0, 150), (280, 150), (610, 152), (890, 170), (1210, 171)])
    assert fired_at(live(engine, batch), batch) == [3]  # +18 °F over 280 s


def test_rate_gap_is_not_a_rate() -> None:
    """200 °F, then silence for half an hour, then 120 °F: no 'falling' alarm."""
    engine = AlertEngine([rate(AlertKind.FALLING, 20)], NO_COOLDOWN)
    before = [(i * 15.0, 200.0) for i in range(30)]
    after = [(2400 + i * 15.0, 120.0) for i in range(40)]
    assert live(engine, timed([*before, *after])) == []


def test_rate_unplugged_probe_restarts_the_window() -> None:
    """Pulled out of the meat at 200 °F, plugged back in at 70 °F: no 'falling' alarm."""
    engine = AlertEngine([rate(AlertKind.FALLING, 20)], NO_COOLDOWN)
    values: list[Value] = [200.0] * 30 + [None] * 4 + [70.0] * 40
    assert live(engine, readings(values)) == []


def test_rate_re_arms_when_the_rise_slows_and_fires_again() -> None:
    engine = AlertEngine([rate(AlertKind.RISING, 10)], NO_COOLDOWN)
    values = ramp(15, flat_min=6, rate_per_min=4, ramp_min=5)  # fires, then flat: re-arms
    second = ramp(15, flat_min=6, rate_per_min=4, ramp_min=5)
    batch = readings([*values, *[v + 20 for v in second if v is not None]])
    firings = live(engine, batch)
    assert [f.event for f in firings] == [FiringEvent.RISING, FiringEvent.RISING]
    assert engine.state(3).arm is Arm.ARMED  # flat again at the end: re-armed


@pytest.mark.parametrize(
    ("rule", "unit", "values", "fires"),
    [
        # 10 °F in 5 min = 5.56 °C: 5 °C does not fire, 6 °C does
        (rate(AlertKind.RISING, 10), C, [100.0] * 21 + [105.0] * 21, False),
        (rate(AlertKind.RISING, 10), C, [100.0] * 21 + [106.0] * 21, True),
        # 5 °C in 5 min = 9 °F: 8.5 °F does not fire, 9 °F does
        (rate(AlertKind.FALLING, 5, C), F, [200.0] * 21 + [191.5] * 21, False),
        (rate(AlertKind.FALLING, 5, C), F, [200.0] * 21 + [191.0] * 21, True),
    ],
)
def test_rate_units(rule: AlertRule, unit: Unit, values: list[Value], fires: bool) -> None:
    engine = AlertEngine([rule], NO_COOLDOWN)
    assert bool(live(engine, readings(values, unit=unit))) is fires


def test_rate_cooldown_between_firings() -> None:
    """Falling 10 °F, re-armed, falling again a minute later: the cooldown holds it back."""
    engine = AlertEngine([rate(AlertKind.FALLING, 10)], AlertSettings(AlertsConfig(hysteresis_f=2)))
    values = [250.0] * 21 + [238.0] * 21 + [250.0] * 4 + [239.0] * 30
    firings = live(engine, readings(values))
    assert len(firings) == 2
    assert firings[1].time - firings[0].time >= timedelta(minutes=5)


# --------------------------------------------------------------------------- freshness, order


def test_stale_readings_never_fire_but_a_fresh_one_does() -> None:
    """An offline device's last value, served again hours later, is no alarm."""
    engine = AlertEngine([target(203)], NO_COOLDOWN)
    batch = readings([205, 206])
    assert engine.process(batch[:1], now=T0 + timedelta(hours=3)) == []
    assert engine.state(1).arm is Arm.ARMED
    assert fired_at(engine.process(batch[1:], now=batch[1].time), batch) == [1]


def test_max_age_none_lets_old_readings_fire() -> None:
    engine = AlertEngine([target(203)], AlertSettings(AlertsConfig(max_age=0)))
    assert len(engine.process(readings([205]), now=T0 + timedelta(days=2))) == 1


def test_replayed_and_older_readings_are_ignored() -> None:
    engine = AlertEngine([target(203)], NO_COOLDOWN)
    batch = readings([190, 204, 190, 204])
    live(engine, batch[:2])
    assert live(engine, batch[:2]) == []  # the same poll again
    assert live(engine, [replace(batch[3], time=batch[0].time)]) == []  # an older time
    assert len(live(engine, batch[2:])) == 1


def test_readings_of_other_probes_are_ignored() -> None:
    engine = AlertEngine([target(203)], NO_COOLDOWN)
    assert live(engine, readings([250], channel=2)) == []
    assert live(engine, [replace(r, serial="OTHER") for r in readings([250])]) == []


def test_humidity_channel_is_never_judged_and_is_reported() -> None:
    engine = AlertEngine([target(50)], NO_COOLDOWN)
    assert live(engine, readings([60, 70], unit=H)) == []
    assert engine.misapplied() == {1}


def test_several_rules_on_one_probe_fire_in_reading_order() -> None:
    rules = [target(203), range_(180, 210), rate(AlertKind.RISING, 20)]
    engine = AlertEngine(rules, NO_COOLDOWN)
    values = [150.0] * 20 + [190.0] * 20 + [205.0] * 5 + [215.0]
    firings = live(engine, readings(values))
    assert [(f.alert_id, f.event.value) for f in firings] == [
        (3, "rising"),  # 150 -> 190
        (1, "target_reached"),  # 205
        (2, "too_high"),  # 215 ...
        (3, "rising"),  # ... and 190 -> 215 within five minutes (re-armed meanwhile)
    ]


# --------------------------------------------------------------------------- rules and state


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": AlertKind.TARGET}, "a target alert needs a target temperature"),
        ({"kind": AlertKind.RANGE, "low": 100}, "a range alert needs both a min and a max"),
        ({"kind": AlertKind.RANGE, "low": 300, "high": 225}, "min (300) must be below max (225)"),
        ({"kind": AlertKind.RANGE, "low": 225, "high": 225}, "min (225) must be below max (225)"),
        ({"kind": AlertKind.RISING}, "a rising alert needs a threshold"),
        ({"kind": AlertKind.FALLING, "threshold": 0}, "threshold: must be greater than 0"),
        ({"kind": AlertKind.RISING, "threshold": -3}, "threshold: must be greater than 0"),
        ({"kind": AlertKind.TARGET, "target": float("nan")}, "target: not a finite number"),
        ({"kind": AlertKind.TARGET, "target": 50, "unit": H}, "not humidity"),
        ({"kind": AlertKind.TARGET, "target": 50, "channel": 0}, "probe: must be 1 to 9"),
    ],
)
def test_invalid_rules_are_clear_errors(kwargs: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"id": 1, "serial": SERIAL, "channel": 1, **kwargs}
    with pytest.raises(AlertRuleError) as info:
        AlertRule(**values)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_alert_kind_parse() -> None:
    assert AlertKind.parse(" Range ") is AlertKind.RANGE
    with pytest.raises(AlertRuleError, match="unknown alert type 'ramp'"):
        AlertKind.parse("ramp")


def test_set_rules_keeps_unchanged_state_and_resets_changed_rules() -> None:
    rules = [target(203), range_(225, 275)]
    engine = AlertEngine(rules, NO_COOLDOWN)
    live(engine, readings([250, 280]))  # target fired, range too high
    assert engine.is_active(1) and engine.is_active(2)
    renamed = replace(rules[0], name="renamed")
    engine.set_rules([renamed, range_(225, 300)])  # the range changed
    assert engine.is_active(1)
    assert engine.state(2).arm is Arm.ARMED and engine.state(2).low_arm is Arm.WAITING
    assert engine.rules[0].name == "renamed"
    engine.set_rules([renamed])
    assert [r.id for r in engine.rules] == [1]
    with pytest.raises(KeyError):
        engine.state(2)


def test_a_changed_target_fires_again_if_already_reached() -> None:
    """Lowering a target below the current temperature (e.g. from Home Assistant) fires."""
    engine = AlertEngine([target(203)], NO_COOLDOWN)
    batch = readings([200, 201, 202])
    live(engine, batch[:1])
    engine.set_rules([target(201)])
    assert fired_at(live(engine, batch[1:]), batch) == [1]


def test_take_changes_reports_each_change_once() -> None:
    engine = AlertEngine([target(203), range_(225, 275)], NO_COOLDOWN)
    assert engine.take_changes() == []
    live(engine, readings([150, 204]))
    changes = engine.take_changes()
    assert [(s.alert_id, s.arm, s.active) for s in changes] == [(1, Arm.FIRED, True)]
    assert changes[0].last_fired == changes[0].changed_at == T0 + timedelta(seconds=15)
    assert engine.take_changes() == []
    live(engine, readings([230], start=T0 + timedelta(minutes=1)))
    assert [(s.alert_id, s.low_arm) for s in engine.take_changes()] == [(2, Arm.ARMED)]


def test_duplicate_rule_ids_are_refused() -> None:
    with pytest.raises(AlertRuleError, match="alert 1: given twice"):
        AlertEngine([target(203), target(210)])


# --------------------------------------------------------------------------- restart

LONG_COOK: list[Value] = [
    *[70.0 + 10 * i for i in range(16)],  # warming up (and rising fast)
    *[230.0 + (1.5 if i % 2 else -1.5) for i in range(30)],  # noisy plateau in range
    *[None] * 3,  # unplugged for a moment
    *[231.0 + 3 * i for i in range(20)],  # climbing through max and the target
    *[290.0 - 6 * i for i in range(20)],  # falling fast, below min
    *[205.0 + (2.5 if i % 2 else -2.5) for i in range(20)],  # noise around the target
]
RESTART_RULES = [
    target(203),
    range_(225, 275),
    rate(AlertKind.RISING, 15),
    rate_rule_falling(15),
    replace(target(95, C), id=5),
    replace(range_(100, 130, C), id=6),
]


@pytest.mark.parametrize("interval", [5, 60, 300])
@pytest.mark.parametrize("split", [1, 10, 20, 47, 52, 70, 80, 100])
def test_restart_in_the_middle_changes_nothing(interval: float, split: int) -> None:
    """Export the state, build a new engine from it (rate windows primed from the stored
    readings, as the service does), continue: the same firings, none repeated."""
    settings = AlertSettings()
    batch = readings(LONG_COOK, interval)
    reference = live(AlertEngine(RESTART_RULES, settings), batch)
    assert len(reference) >= 6

    first = AlertEngine(RESTART_RULES, settings)
    before = live(first, batch[:split])
    second = AlertEngine(RESTART_RULES, settings, states=first.export_state())
    stored = [r for r in batch[:split] if r.value is not None]
    second.prime(stored)
    # The daemon's first poll after a restart may hand over the last reading again.
    after = live(second, batch[max(split - 1, 0) :])
    assert before + after == reference


def test_restart_without_rate_history_waits_for_a_full_window() -> None:
    """Without primed readings a rising alert cannot judge until the window is covered."""
    batch = readings([150.0] * 20 + [150.0 + 6 * i for i in range(1, 30)])
    first = AlertEngine([rate(AlertKind.RISING, 15)], NO_COOLDOWN)
    live(first, batch[:22])
    second = AlertEngine(first.rules, NO_COOLDOWN, states=first.export_state())
    firings = live(second, batch[22:])
    assert len(firings) == 1
    assert firings[0].time - batch[22].time >= timedelta(seconds=240)


def test_state_saved_for_another_version_of_a_rule_is_ignored() -> None:
    engine = AlertEngine([target(203)], NO_COOLDOWN)
    live(engine, readings([210]))
    saved = engine.export_state()
    restored = AlertEngine([target(220)], NO_COOLDOWN, states=saved)
    assert restored.state(1).arm is Arm.ARMED
    assert restored.state(1).rule_key != saved[0].rule_key


# --------------------------------------------------------------------------- a whole cook

SIGNALS, RFX_POINT = "10:06:1C:6F:47:70", "M100081210"
BRISKET_RULES = [
    AlertRule(id=1, serial=SIGNALS, channel=2, kind=AlertKind.TARGET, target=203),  # flat
    AlertRule(id=2, serial=SIGNALS, channel=1, kind=AlertKind.RANGE, low=225, high=275),  # pit
    AlertRule(id=3, serial=SIGNALS, channel=3, kind=AlertKind.FALLING, threshold=15),  # point
    AlertRule(id=4, serial=SIGNALS, channel=3, kind=AlertKind.RISING, threshold=15),
    AlertRule(id=5, serial=RFX_POINT, channel=1, kind=AlertKind.RANGE, low=120, high=230),
    AlertRule(id=6, serial=SIGNALS, channel=1, kind=AlertKind.FALLING, threshold=30),
]
BRISKET_FIRINGS = [  # (alert, event, simulated time)
    (2, "too_low", timedelta(hours=5)),  # lid opened to spritz
    (6, "falling", timedelta(hours=5)),
    (2, "too_low", timedelta(hours=8)),  # lid opened to wrap
    (6, "falling", timedelta(hours=8)),
    (1, "target_reached", timedelta(hours=11, minutes=28)),
    (2, "too_low", timedelta(hours=12, minutes=14)),  # the fire dies down
]


def brisket(every: float) -> tuple[datetime, list[Reading]]:
    scenario = load_scenario("brisket")
    series = scenario.all_series(every=every)
    return scenario.start, sorted((r for s in series.values() for r in s), key=lambda r: r.time)


@pytest.mark.parametrize("every", [15, 60, 300])
def test_brisket_cook_fires_the_same_at_any_poll_interval(every: float) -> None:
    """The simulator's 12 h brisket: two lid openings, a stall, a probe unplugged for 15 min
    and put back, an RFX probe out of range for 20 min, every probe pulled at the end.
    Only the real events fire, at every poll interval, within one interval of each other."""
    start, batch = brisket(every)
    firings = live(AlertEngine(BRISKET_RULES), batch)
    assert [(f.alert_id, f.event.value) for f in firings] == [
        (alert, event) for alert, event, _ in BRISKET_FIRINGS
    ]
    for firing, (_, _, expected) in zip(firings, BRISKET_FIRINGS, strict=True):
        assert expected <= firing.time - start <= expected + timedelta(seconds=every + 60)


def test_brisket_cook_with_a_restart_during_the_lid_opening() -> None:
    start, batch = brisket(60)
    reference = live(AlertEngine(BRISKET_RULES), batch)
    split = next(i for i, r in enumerate(batch) if r.time - start >= timedelta(hours=5, minutes=2))
    first = AlertEngine(BRISKET_RULES)
    before = live(first, batch[:split])
    second = AlertEngine(BRISKET_RULES, states=first.export_state())
    second.prime(r for r in batch[:split] if r.value is not None)
    assert before + live(second, batch[split:]) == reference
