"""The pure cook feature: stall detection, the done-time predictor, cook states (plain values)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from grillstats_bridge.config import Config, ConfigError, CookConfig
from grillstats_bridge.cook.detector import Stall, detect, rise
from grillstats_bridge.cook.model import (
    CookBatch,
    CookEventKind,
    CookState,
    CookStep,
    Method,
    Rules,
)
from grillstats_bridge.cook.predictor import fit_line, predict
from grillstats_bridge.cook.tracker import CookTracker, device_pit
from grillstats_bridge.domain import Device, Measurement, Probe, Reading, Unit

T0 = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
MIN = 60.0
H = 3600.0
RULES = Rules()
SERIAL = "10:06:1C:6F:47:70"


def newton(t: float, *, pit: float = 250.0, start: float = 40.0, k: float = 1 / (2.5 * H)) -> float:
    return pit - (pit - start) * math.exp(-k * t)


def samples(
    fn: Callable[[float], float], start: float, end: float, every: float = MIN
) -> list[tuple[float, float]]:
    n = int((end - start) / every)
    return [(start + i * every, float(fn(start + i * every))) for i in range(n + 1)]


# ---------------------------------------------------------------- the detector


def test_flat_in_band_is_a_stall_dated_back_a_window() -> None:
    flat = samples(lambda t: 160.0 + 0.03 * t / MIN, 0, 40 * MIN)  # 1.2 °F in 40 min
    stall = detect(flat, 40 * MIN, Stall(), RULES)
    assert stall.stalled
    assert stall.start == pytest.approx(10 * MIN)


def test_rising_faster_than_the_threshold_is_no_stall() -> None:
    climbing = samples(lambda t: 150.0 + 6.0 * t / H, 0, 40 * MIN)  # 3 °F in 30 min
    assert not detect(climbing, 40 * MIN, Stall(), RULES).stalled


def test_flat_outside_the_band_is_no_stall() -> None:
    for temperature in (120.0, 190.0):
        flat = [(i * MIN, temperature) for i in range(41)]
        assert not detect(flat, 40 * MIN, Stall(), RULES).stalled


def test_a_stall_needs_the_whole_window() -> None:
    short = samples(lambda t: 160.0, 0, 20 * MIN)
    assert rise(short, 20 * MIN, RULES.stall_time) is None
    assert not detect(short, 20 * MIN, Stall(), RULES).stalled


def test_a_cooling_probe_is_no_stall() -> None:
    cooling = samples(lambda t: 175.0 - 12.0 * t / H, 0, 40 * MIN)
    assert not detect(cooling, 40 * MIN, Stall(), RULES).stalled


def test_a_stall_ends_when_the_climb_resumes_and_not_on_noise() -> None:
    stalled = Stall(start=0.0)
    noisy = samples(lambda t: 160.0 + 1.0 * math.sin(t / 97.0), 0, 60 * MIN)
    assert detect(noisy, 60 * MIN, stalled, RULES) == stalled
    resumed = samples(lambda t: 160.0 + max(t - 30 * MIN, 0) * 15.0 / H, 0, 60 * MIN)
    assert not detect(resumed, 60 * MIN, stalled, RULES).stalled


def test_the_thresholds_come_from_the_rules() -> None:
    gentle = samples(lambda t: 160.0 + 5.0 * t / H, 0, 40 * MIN)  # 2.5 °F in 30 min
    assert not detect(gentle, 40 * MIN, Stall(), RULES).stalled
    assert detect(gentle, 40 * MIN, Stall(), Rules(stall_rise=3.0)).stalled


# ---------------------------------------------------------------- the predictor


def test_fit_line_ignores_an_outlier() -> None:
    xs = [float(i) for i in range(20)]
    ys = [2.0 + 0.5 * x for x in xs]
    ys[7] += 30.0
    line = fit_line(xs, ys)
    assert line is not None
    assert line.b == pytest.approx(0.5, abs=1e-9)


def test_newton_recovers_the_done_time_of_a_newton_curve() -> None:
    k = 1 / (2.5 * H)
    now = 2 * H
    meat = samples(lambda t: newton(t, k=k), 0, now)
    pit = samples(lambda t: 250.0, 0, now)
    prediction = predict(meat, 200.0, now, RULES, pit=pit)
    actual = -math.log((250.0 - 200.0) / 210.0) / k - now
    assert prediction.method is Method.NEWTON
    assert prediction.seconds == pytest.approx(actual, rel=0.01)
    assert prediction.low is not None and prediction.high is not None
    assert prediction.low <= actual <= prediction.high


def test_meat_heading_below_the_pit_is_fitted_to_its_own_level() -> None:
    k = 1 / H
    now = 40 * MIN
    meat = samples(lambda t: newton(t, pit=215.0, start=100.0, k=k), 0, now)
    pit = samples(lambda t: 250.0, 0, now)
    actual = math.log((215.0 - 100.0) / (215.0 - 200.0)) / k - now
    prediction = predict(meat, 200.0, now, RULES, pit=pit)
    assert prediction.method is Method.NEWTON and prediction.seconds is not None
    assert prediction.seconds == pytest.approx(actual, rel=0.15)
    toward_pit = math.log((250.0 - meat[-1][1]) / 50.0) / (
        k * (215 - meat[-1][1]) / (250 - meat[-1][1])
    )
    assert abs(prediction.seconds - actual) < abs(toward_pit - actual) / 2


def test_without_a_pit_the_rate_is_extrapolated() -> None:
    meat = samples(lambda t: 100.0 + 20.0 * t / H, 0, H)
    prediction = predict(meat, 160.0, H, RULES)
    assert prediction.method is Method.LINEAR
    assert prediction.seconds == pytest.approx(2 * H, rel=0.01)
    assert prediction.rate == pytest.approx(20.0, rel=0.01)


def test_a_probe_silent_for_a_while_still_gets_an_estimate() -> None:
    """Push-on-change probes fall silent while nothing moves: the last readings are minutes
    older than the poll (this raised 'no median for empty data' at every poll)."""
    meat = samples(lambda t: 100.0 + 20.0 * t / H, 0, H)
    prediction = predict(meat, 160.0, H + 10 * MIN, RULES)
    assert prediction.method is Method.LINEAR and prediction.seconds is not None


def test_a_pit_below_the_target_falls_back_to_the_rate() -> None:
    meat = samples(lambda t: 100.0 + 20.0 * t / H, 0, H)
    pit = samples(lambda t: 150.0, 0, H)
    assert predict(meat, 160.0, H, RULES, pit=pit).method is Method.LINEAR


def test_noise_widens_the_band() -> None:
    clean = samples(lambda t: 100.0 + 20.0 * t / H, 0, H)
    noisy = [(t, v + 6.0 * math.sin(t * 1.7)) for t, v in clean]
    narrow = predict(clean, 160.0, H, RULES)
    wide = predict(noisy, 160.0, H, RULES)
    assert narrow.low is not None and narrow.high is not None
    assert wide.low is not None and wide.high is not None
    assert wide.high - wide.low > narrow.high - narrow.low


def test_too_few_readings_give_no_estimate() -> None:
    meat = samples(lambda t: 100.0 + 20.0 * t / H, 0, 5 * MIN)
    assert predict(meat, 160.0, 5 * MIN, RULES).method is Method.NONE


def test_a_flat_probe_gives_no_estimate_outside_a_stall() -> None:
    meat = samples(lambda t: 70.0, 0, H)
    prediction = predict(meat, 160.0, H, RULES)
    assert prediction.method is Method.NONE and prediction.seconds is None


def test_inside_a_stall_the_estimate_says_so_and_widens() -> None:
    meat = samples(lambda t: 160.0, 0, H)
    rate = 12.0 / H
    prediction = predict(meat, 200.0, H, RULES, stall_start=0.0, rate_before_stall=rate)
    fastest = 40.0 / rate
    assert prediction.method is Method.STALL
    assert prediction.seconds == pytest.approx(RULES.stall_expected - H + fastest / 0.7)
    assert prediction.low == pytest.approx(fastest)
    assert prediction.high is not None and prediction.seconds is not None
    assert prediction.high > prediction.seconds + H


def test_a_stall_ahead_adds_its_expected_length_on_a_low_pit_only() -> None:
    meat = samples(lambda t: newton(t, pit=250.0), 0, 2 * H)
    low_pit = samples(lambda t: 250.0, 0, 2 * H)
    plain = predict(meat, 203.0, 2 * H, RULES, pit=low_pit)
    ahead = predict(meat, 203.0, 2 * H, RULES, pit=low_pit, stall_ahead=True)
    assert plain.seconds is not None and ahead.seconds is not None
    assert ahead.seconds == pytest.approx(plain.seconds + RULES.stall_expected)
    assert ahead.low == plain.low  # the stall may not come
    hot_pit = samples(lambda t: 350.0, 0, 2 * H)
    hot = predict(meat, 203.0, 2 * H, RULES, pit=hot_pit, stall_ahead=True)
    assert hot == predict(meat, 203.0, 2 * H, RULES, pit=hot_pit)  # hot and fast: no stall


def test_after_a_stall_only_the_climb_is_fitted() -> None:
    meat = samples(lambda t: 160.0 + max(t - H, 0.0) * 12.0 / H, 0, H + 20 * MIN)
    whole = predict(meat, 200.0, H + 20 * MIN, RULES)
    climb = predict(meat, 200.0, H + 20 * MIN, RULES, since=H)
    assert climb.rate == pytest.approx(12.0, rel=0.02)
    assert whole.rate is not None and whole.rate < 10.0


def test_a_reached_target_is_done() -> None:
    meat = samples(lambda t: 190.0 + 20.0 * t / H, 0, H)
    assert predict(meat, 200.0, H, RULES).method is Method.DONE


# ---------------------------------------------------------------- the tracker


def reading(
    t: float, value: float | None, channel: int = 2, unit: Unit = Unit.FAHRENHEIT
) -> Reading:
    return Reading(
        serial=SERIAL, channel=channel, time=T0 + timedelta(seconds=t), value=value, unit=unit
    )


def run(
    tracker: CookTracker,
    meat: Callable[[float], float | None],
    start: float,
    end: float,
    *,
    target: float = 203.0,
    pit: float | None = 250.0,
    every: float = MIN,
) -> list[CookStep]:
    """Feed one reading a minute; return every step."""
    steps = []
    targets = {(SERIAL, 2): Measurement(target, Unit.FAHRENHEIT)}
    t = start
    while t <= end:
        batch = [reading(t, meat(t))]
        if pit is not None:
            batch.append(reading(t, pit, channel=1))
        now = T0 + timedelta(seconds=t)
        steps.append(
            tracker.step(CookBatch(now=now, readings=batch, targets=targets, pits={SERIAL: 1}))
        )
        t += every
    return steps


def brisket(t: float) -> float:
    """40 °F to 160 °F in 4 h, a 3 h stall, then 13 °F/h to 205 °F."""
    if t < 4 * H:
        return 40.0 + 30.0 * t / H
    if t < 7 * H:
        return 160.0 + 0.5 * (t - 4 * H) / H
    return 161.5 + 13.0 * (t - 7 * H) / H


def test_a_cook_goes_through_its_states_and_events() -> None:
    tracker = CookTracker(RULES)
    steps = run(tracker, brisket, 0, 11 * H)
    states: list[CookState] = []
    events: list[tuple[CookEventKind, datetime, datetime | None]] = []
    for step in steps:
        for estimate in step.estimates:
            if not states or states[-1] != estimate.state:
                states.append(estimate.state)
        events += [(e.kind, e.at, e.stall_start) for e in step.events]
    assert states == [
        CookState.COOKING,
        CookState.STALLED,
        CookState.COOKING,
        CookState.ALMOST_READY,
        CookState.READY,
    ]
    kinds = [kind for kind, _, _ in events]
    assert kinds == [CookEventKind.STALL_STARTED, CookEventKind.STALL_ENDED, CookEventKind.READY]
    started_at, stall_start = events[0][1], events[0][2]
    assert stall_start is not None
    assert abs((stall_start - (T0 + timedelta(hours=4))).total_seconds()) <= 10 * MIN
    assert started_at - (T0 + timedelta(hours=4)) <= timedelta(minutes=35)
    assert events[1][1] - (T0 + timedelta(hours=7)) <= timedelta(minutes=35)


def test_the_estimate_during_a_stall_is_flagged_and_the_band_covers_the_end() -> None:
    tracker = CookTracker(RULES)
    steps = run(tracker, brisket, 0, 5 * H)
    last = steps[-1]
    (estimate,) = last.estimates
    assert estimate.stalled and estimate.method is Method.STALL
    assert estimate.stall_started is not None
    done = T0 + timedelta(hours=7) + timedelta(hours=(203.0 - 161.5) / 13.0)
    assert estimate.low is not None and estimate.high is not None
    assert estimate.low <= done <= estimate.high
    assert estimate.minutes_left is not None and estimate.minutes_left > 60


def test_readings_between_samples_count_the_last_fit_down_and_a_new_sample_refits() -> None:
    """Polled every 15 s, a probe's readings are averaged into one sample a minute: the
    fit is made once per sample, and the polls in between count its done time down."""
    tracker = CookTracker(RULES)

    def wavy(t: float) -> float:  # a climb whose pace wanders: every refit moves the time
        return 40.0 + 30.0 * t / H + 3.0 * math.sin(t / 400.0)

    steps = run(tracker, wavy, 0, 3 * H, every=15.0)
    estimates = [s.estimates[0] for s in steps if s.estimates and s.estimates[0].done_at]
    assert len(estimates) > 300
    done = [e.done_at for e in estimates[-200:]]
    runs = sum(1 for a, b in itertools.pairwise(done) if a != b)
    # one refit per sample (55 s: every 4th poll), not at every poll
    assert 200 / 6 < runs < 200 / 3
    for e in estimates[-8:]:
        assert e.done_at is not None and e.low is not None and e.high is not None
        assert e.low <= e.done_at <= e.high


def test_a_counted_down_estimate_gives_way_to_done_within_a_sample() -> None:
    """Near the end the count-down runs out and the probe is fitted again: done comes
    within one sample of the probe's level reaching the target, as with a fit per poll."""
    tracker = CookTracker(RULES)
    steps = run(tracker, lambda t: 40.0 + 30.0 * t / H, 0, 5.8 * H, target=203.0, every=15.0)
    estimates = [s.estimates[0] for s in steps if s.estimates]
    reached = next(e for e in estimates if e.value is not None and e.value >= 203.0)
    done = next(e for e in estimates if e.method is Method.DONE)
    assert reached.state is CookState.READY
    assert timedelta(0) <= done.at - reached.at <= timedelta(seconds=55)


def test_pulled_after_the_target_is_resting_and_ready_fires_once() -> None:
    tracker = CookTracker(RULES)
    steps = run(tracker, lambda t: 190.0 + 30.0 * t / H, 0, H, target=200.0)
    ready = [e for s in steps for e in s.events if e.kind is CookEventKind.READY]
    assert len(ready) == 1
    targets = {(SERIAL, 2): Measurement(200.0, Unit.FAHRENHEIT)}
    pulled = tracker.step(
        CookBatch(
            now=T0 + timedelta(hours=1, minutes=1),
            readings=[reading(H + MIN, None)],
            targets=targets,
        )
    )
    assert pulled.estimates[0].state is CookState.RESTING
    assert pulled.estimates[0].progress == 100.0


def test_preheating_while_the_pit_climbs_and_the_meat_is_cold() -> None:
    tracker = CookTracker(RULES)
    targets = {(SERIAL, 2): Measurement(203.0, Unit.FAHRENHEIT)}
    step = None
    for i in range(20):
        t = i * MIN
        batch = [reading(t, 38.0), reading(t, 70.0 + 5.0 * i, channel=1)]
        step = tracker.step(
            CookBatch(
                now=T0 + timedelta(seconds=t), readings=batch, targets=targets, pits={SERIAL: 1}
            )
        )
    assert step is not None
    assert step.estimates[0].state is CookState.PREHEATING
    assert step.devices == {SERIAL: CookState.PREHEATING}


def test_the_device_state_is_its_least_advanced_probe_and_celsius_targets_work() -> None:
    tracker = CookTracker(RULES)
    targets = {
        (SERIAL, 2): Measurement(95.0, Unit.CELSIUS),  # 203 °F
        (SERIAL, 3): Measurement(60.0, Unit.FAHRENHEIT),
    }
    step = None
    for i in range(15):
        now = T0 + timedelta(minutes=i)
        batch = [reading(i * MIN, 150.0), reading(i * MIN, 65.0, channel=3)]
        step = tracker.step(CookBatch(now=now, readings=batch, targets=targets))
    assert step is not None
    by_channel = {e.channel: e for e in step.estimates}
    assert by_channel[2].target == pytest.approx(203.0)
    assert by_channel[3].state is CookState.READY
    assert step.devices[SERIAL] is by_channel[2].state
    assert by_channel[2].state.rank < CookState.READY.rank


def test_a_target_removed_is_dropped_once() -> None:
    tracker = CookTracker(RULES)
    run(tracker, lambda t: 100.0 + 20.0 * t / H, 0, 20 * MIN, pit=None)
    gone = tracker.step(
        CookBatch(now=T0 + timedelta(minutes=21), readings=[reading(21 * MIN, 107.0)])
    )
    assert gone.dropped == ((SERIAL, 2),) and gone.estimates == ()
    again = tracker.step(
        CookBatch(now=T0 + timedelta(minutes=22), readings=[reading(22 * MIN, 107.3)])
    )
    assert again.dropped == ()


def test_a_replay_rebuilds_the_stall_without_events() -> None:
    tracker = CookTracker(RULES)
    targets = {(SERIAL, 2): Measurement(203.0, Unit.FAHRENHEIT)}
    history = [reading(t, brisket(t)) for t in range(0, int(5 * H), int(MIN))]
    replayed = tracker.step(
        CookBatch(now=T0 + timedelta(hours=5), readings=history, targets=targets, replay=True)
    )
    assert replayed.events == ()
    assert replayed.estimates[0].stalled


def test_pit_channel_is_a_probe_without_target_labelled_like_a_pit() -> None:
    device = Device(
        serial=SERIAL,
        probes=(
            Probe(serial=SERIAL, channel=1, label="Pit"),
            Probe(serial=SERIAL, channel=2, label="Brisket"),
        ),
    )
    targets = {(SERIAL, 2): Measurement(203.0, Unit.FAHRENHEIT)}
    assert device_pit(device, targets) == 1
    assert device_pit(device, {**targets, (SERIAL, 1): targets[(SERIAL, 2)]}) is None


# ---------------------------------------------------------------- configuration


def test_the_cook_section_has_its_defaults_and_rejects_a_reversed_band() -> None:
    assert Rules.from_config(Config().cook) == Rules()
    with pytest.raises(ConfigError, match=r"cook\.stall_low"):
        CookConfig(stall_low=190.0).validate()


def test_readings_every_15_s_give_the_estimate_of_one_a_minute_and_a_replay_changes_nothing() -> (
    None
):
    targets = {(SERIAL, 2): Measurement(160.0, Unit.FAHRENHEIT)}

    def last(tracker: CookTracker, every: int, replay: bool = False) -> object:
        step = None
        for t in range(0, int(H) + 1, every):
            batch = [reading(t, 100.0 + 20.0 * t / H)]
            now = T0 + timedelta(seconds=t)
            step = tracker.step(CookBatch(now=now, readings=batch, targets=targets))
            if replay:  # the same poll again (a rolled-back batch retried)
                step = tracker.step(CookBatch(now=now, readings=batch, targets=targets))
        assert step is not None
        (estimate,) = step.estimates
        return estimate.done_at

    once = last(CookTracker(RULES), 60)
    fast = last(CookTracker(RULES), 15)
    assert isinstance(once, datetime) and isinstance(fast, datetime)
    assert abs((fast - once).total_seconds()) < 60
    assert last(CookTracker(RULES), 15, replay=True) == fast
