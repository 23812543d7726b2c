"""The predictor and a pit that changes (plain values): a step up (a sear, a raised pit)
is refitted toward the new level, a lid opening is not a step, a learned sear is
expected, and the tracker learns a sear from a cook."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from grillstats_bridge.cook.calibration import PastCook, calibrate
from grillstats_bridge.cook.model import (
    Calibration,
    CookBatch,
    CookEvent,
    CookEventKind,
    Method,
    Rules,
)
from grillstats_bridge.cook.predictor import predict
from grillstats_bridge.cook.tracker import CookTracker
from grillstats_bridge.domain import Measurement, Unit
from tests.test_cook import MIN, RULES, SERIAL, T0, H, reading, samples

K = 1 / (110 * MIN)  # a thick steak's Newton constant


def steak(t: float, *, sear: float | None = None) -> float:
    """38 °F toward a 225 °F pit; from ``sear`` on toward 550 °F (same k)."""
    if sear is None or t <= sear:
        return 225.0 - (225.0 - 38.0) * math.exp(-K * t)
    at = steak(sear)
    return 550.0 - (550.0 - at) * math.exp(-K * (t - sear))


def pit(t: float, *, sear: float | None = None, dip: float | None = None) -> float:
    value = 550.0 if sear is not None and t > sear else 225.0
    if dip is not None and dip <= t < dip + 8 * MIN:
        value -= 70.0 * (1 - (t - dip) / (8 * MIN))  # a lid opening, recovering
    return value


def newton_seconds(pit_level: float, now_value: float, target: float) -> float:
    return math.log((pit_level - now_value) / (pit_level - target)) / K


def test_a_pit_stepped_up_heads_the_meat_for_the_new_level() -> None:
    sear = 60 * MIN
    now = sear + 3 * MIN  # a few readings since: the meat's k toward the new level
    meat = samples(lambda t: steak(t, sear=sear), 0, now)
    grate = samples(lambda t: pit(t, sear=sear), 0, now)
    hot = predict(meat, 140.0, now, RULES, pit=grate)
    assert hot.method is Method.NEWTON and hot.seconds is not None
    assert hot.pit_step is not None and abs(hot.pit_step - sear) <= MIN
    expected = newton_seconds(550.0, steak(now, sear=sear), 140.0)
    # (from the last five minutes' median: a little behind the meat)
    assert expected <= hot.seconds <= expected + 3 * MIN
    slow = newton_seconds(225.0, steak(now, sear=sear), 140.0)
    assert slow > 2 * hot.seconds  # what the old pit says
    later = sear + 15 * MIN  # enough readings since: refitted on them alone
    meat = samples(lambda t: steak(t, sear=sear), 0, later)
    grate = samples(lambda t: pit(t, sear=sear), 0, later)
    target = steak(later + 5 * MIN, sear=sear)
    refit = predict(meat, target, later, RULES, pit=grate)
    assert refit.seconds == pytest.approx(5 * MIN, abs=1.5 * MIN)


def test_a_lid_opening_is_no_step() -> None:
    now = 60 * MIN
    meat = samples(steak, 0, now)
    plain = predict(meat, 130.0, now, RULES, pit=samples(pit, 0, now))
    opened = predict(meat, 130.0, now, RULES, pit=samples(lambda t: pit(t, dip=45 * MIN), 0, now))
    assert opened.pit_step is None and plain.pit_step is None
    assert opened.seconds == pytest.approx(plain.seconds, rel=0.02)


def test_a_learned_sear_is_expected_and_the_band_keeps_no_sear() -> None:
    now = 40 * MIN
    meat = samples(steak, 0, now)
    grate = samples(pit, 0, now)
    plain = predict(meat, 130.0, now, RULES, pit=grate)
    learned = Calibration(past_cooks=2, sear_at=115.0, sear_seconds=8 * MIN)
    seared = predict(meat, 130.0, now, RULES, pit=grate, calibration=learned)
    assert plain.seconds is not None and seared.seconds is not None
    to_sear = newton_seconds(225.0, steak(now), 115.0)
    assert seared.seconds == pytest.approx(to_sear + 8 * MIN, abs=2 * MIN)
    assert seared.seconds < plain.seconds - 5 * MIN
    assert seared.high is not None and seared.high >= plain.seconds  # maybe no sear this time
    assert seared.plain is None  # not a plain climb: nothing to learn the pace from


def test_a_first_cook_to_a_low_target_may_be_seared_the_band_says_so() -> None:
    """Nothing known of the person: a steak under a 225 °F pit may be seared any time;
    the band's early side holds "a sear now" (the meat's k toward 500 °F), the estimate
    and the late side do not move; a higher target, past cooks or no pit keep the band."""
    now = 40 * MIN
    meat = samples(steak, 0, now)
    grate = samples(pit, 0, now)
    first = predict(meat, 130.0, now, RULES, pit=grate)
    assert first.method is Method.NEWTON and first.seconds is not None
    assert first.low is not None and first.high is not None
    assert first.seconds == pytest.approx(newton_seconds(225.0, steak(now), 130.0), rel=0.05)
    sear_now = math.log((500.0 - steak(now)) / (500.0 - 130.0)) / K
    assert first.low == pytest.approx(sear_now, rel=0.1)
    assert first.low < 0.5 * first.seconds < first.high
    # a sear at 55 min, done 10 min later: inside the band
    assert first.low <= (55 - 40 + 10) * MIN <= first.high
    known = Calibration(past_cooks=2)  # they had cooks at this target and did not sear
    habit = predict(meat, 130.0, now, RULES, pit=grate, calibration=known)
    assert habit.seconds == pytest.approx(first.seconds) and habit.seconds is not None
    assert habit.high == pytest.approx(first.high)
    assert habit.low is not None and habit.low > 0.8 * habit.seconds
    chicken = predict(meat, 165.0, now, RULES, pit=grate)  # poultry: not seared to 165 °F
    assert chicken.seconds is not None and chicken.low is not None
    assert chicken.low > 0.8 * chicken.seconds

    def celsius(series: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(t, (v - 32.0) / 1.8) for t, v in series]

    rules_c = Rules(unit=Unit.CELSIUS)
    in_c = predict(celsius(meat), (130.0 - 32.0) / 1.8, now, rules_c, pit=celsius(grate))
    assert in_c.low == pytest.approx(first.low, rel=0.02)
    alone = predict(meat, 130.0, now, RULES)  # no pit: nothing says it is below a sear's
    assert alone.method is Method.LINEAR and alone.seconds is not None
    assert alone.low is not None and alone.low > 0.8 * alone.seconds


def test_a_sear_is_learned_from_a_cook_and_most_cooks_make_a_habit() -> None:
    sear = 60 * MIN
    tracker = CookTracker(RULES)
    targets = {(SERIAL, 2): Measurement(130.0, Unit.FAHRENHEIT)}
    events: list[CookEvent] = []
    for t in range(0, int(90 * MIN), int(MIN)):
        step = tracker.step(
            CookBatch(
                now=T0 + timedelta(seconds=t),
                readings=[reading(t, steak(t, sear=sear)), reading(t, pit(t, sear=sear), 1)],
                targets=targets,
                pits={SERIAL: 1},
            )
        )
        events += step.events
    (ready,) = [e for e in events if e.kind is CookEventKind.READY]
    assert ready.sear_at == pytest.approx(steak(sear), abs=3.0)
    done = next(t for t in range(int(90 * MIN)) if steak(t, sear=sear) >= 130.0)
    assert ready.sear_seconds == pytest.approx(done - sear, abs=2 * MIN)

    def cook(seared: bool) -> PastCook:
        return PastCook(
            serial=SERIAL,
            target=130.0,
            ended=(T0 - timedelta(days=1)).timestamp(),
            sear_at=115.0 if seared else None,
            sear_seconds=8 * MIN if seared else None,
        )

    now = T0.timestamp()
    habit = calibrate(
        [cook(True), cook(True), cook(False)], serial=SERIAL, target=130.0, now=now, rules=RULES
    )
    assert habit.sear_at == 115.0 and habit.sear_seconds == 8 * MIN
    once = calibrate([cook(True), cook(False)], serial=SERIAL, target=130.0, now=now, rules=RULES)
    assert once.sear_at is None and once.past_cooks == 2


def test_no_sear_is_learned_from_a_pit_raised_during_a_stall_or_a_preheat() -> None:
    tracker = CookTracker(RULES)
    targets = {(SERIAL, 2): Measurement(130.0, Unit.FAHRENHEIT)}
    events: list[CookEvent] = []
    for t in range(0, int(90 * MIN), int(MIN)):  # the pit climbs to 225 with the meat in
        grate = min(70.0 + 155.0 * t / (15 * MIN), 225.0)
        step = tracker.step(
            CookBatch(
                now=T0 + timedelta(seconds=t),
                readings=[reading(t, steak(t)), reading(t, grate, 1)],
                targets=targets,
                pits={SERIAL: 1},
            )
        )
        events += step.events
    ready = [e for e in events if e.kind is CookEventKind.READY]
    assert ready == [] or ready[0].sear_at is None
    assert H > 0
