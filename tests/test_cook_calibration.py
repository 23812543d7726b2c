"""Learning from past cooks (plain values): which cooks count, what they teach, and what
it does to the estimate; the tracker's ready event carries the lesson."""

from __future__ import annotations

from datetime import timedelta

import pytest

from grillstats_bridge.cook.calibration import MAX_AGE, MAX_COOKS, PastCook, calibrate, declared
from grillstats_bridge.cook.model import (
    NO_CALIBRATION,
    POST_STALL_PACE,
    Calibration,
    CookBatch,
    CookEventKind,
    CookMethod,
    Method,
    Rules,
)
from grillstats_bridge.cook.predictor import predict
from grillstats_bridge.cook.tracker import CookTracker
from grillstats_bridge.domain import Measurement, Unit
from tests.test_cook import MIN, RULES, SERIAL, T0, H, brisket, newton, reading, run, samples

NOW = (T0 + timedelta(days=30)).timestamp()  # the injected clock
OTHER = "10:06:1C:50:0D:04"


def past(
    hours_ago: float,
    *,
    target: float = 203.0,
    serial: str = SERIAL,
    stall: float | None = 2 * H,
    pace: float | None = 1.2,
    climb: float | None = 0.5,
) -> PastCook:
    return PastCook(
        serial=serial,
        target=target,
        ended=NOW - hours_ago * H,
        stall_seconds=stall,
        climb_pace=climb,
        pace=pace,
    )


def cal(cooks: list[PastCook], target: float = 203.0, rules: Rules = RULES) -> Calibration:
    return calibrate(cooks, serial=SERIAL, target=target, now=NOW, rules=rules)


def test_no_past_cooks_is_the_default() -> None:
    assert cal([]) == NO_CALIBRATION
    assert NO_CALIBRATION.past_cooks == 0 and NO_CALIBRATION.pace == 1.0
    assert NO_CALIBRATION.climb_pace == POST_STALL_PACE and NO_CALIBRATION.stall_seconds is None


def test_the_usual_stall_and_pace_are_medians_pulled_toward_the_default() -> None:
    c = cal([past(30, stall=1.5 * H), past(20, stall=2 * H), past(10, stall=5 * H)])
    assert c.past_cooks == 3
    # the median 2 h and one imaginary cook of the configured 3 h
    assert c.stall_seconds == pytest.approx((3 * 2 * H + RULES.stall_expected) / 4)
    assert c.pace == pytest.approx(1.2 ** (3 / 4))  # on the logarithms, 1.0 counted once
    assert c.climb_pace == pytest.approx(0.5 ** (3 / 4) * POST_STALL_PACE ** (1 / 4))
    one = cal([past(10, stall=2 * H)])
    assert one.stall_seconds == pytest.approx((2 * H + RULES.stall_expected) / 2)  # half-way


def test_only_similar_targets_count_and_a_cook_without_a_stall_leaves_the_stall_alone() -> None:
    far = past(5, target=165.0, stall=None, pace=2.0)
    assert cal([far]) == NO_CALIBRATION
    near = cal([past(5, target=195.0), far])
    assert near.past_cooks == 1
    chicken = cal([far, past(6, target=160.0, stall=None, pace=1.4)], target=165.0)
    assert chicken.past_cooks == 2 and chicken.stall_seconds is None
    assert chicken.pace > 1.0


def test_the_same_device_wins_where_it_has_cooked() -> None:
    mine = past(50, stall=1.0 * H)
    others = [past(h, serial=OTHER, stall=6 * H) for h in (1, 2, 3)]
    c = cal([mine, *others])
    assert c.past_cooks == 1 and c.stall_seconds == pytest.approx((1 * H + 3 * H) / 2)
    elsewhere = calibrate(others, serial="other", target=203.0, now=NOW, rules=RULES)
    assert elsewhere.past_cooks == 3  # no cook on this device: the person's others count


def test_the_clock_decides_which_cooks_are_past_and_recent() -> None:
    later = past(-1)  # ends after "now"
    old = past(MAX_AGE / H + 1)
    assert cal([later, old]) == NO_CALIBRATION
    many = [past(h) for h in range(1, 3 * MAX_COOKS)]
    assert cal(many).past_cooks == MAX_COOKS


def test_a_broken_session_does_not_rule() -> None:
    c = cal([past(1, stall=50 * H, pace=30.0, climb=0.01)] * 5)
    assert c.stall_seconds == pytest.approx(3.0 * RULES.stall_expected)
    assert c.pace == pytest.approx(1.8) and c.climb_pace == pytest.approx(0.3)


def test_celsius_targets_compare_in_celsius() -> None:
    rules = Rules(unit=Unit.CELSIUS)
    cooks = [past(1, target=95.0), past(2, target=74.0)]
    assert calibrate(cooks, serial=SERIAL, target=93.0, now=NOW, rules=rules).past_cooks == 1


# ---------------------------------------------------------------- what it does


def test_a_learned_stall_and_climb_change_the_estimate_inside_a_stall() -> None:
    meat = samples(lambda t: 160.0, 0, H)
    rate = 12.0 / H
    learned = Calibration(past_cooks=2, stall_seconds=2 * H, climb_pace=0.5)
    plain = predict(meat, 200.0, H, RULES, stall_start=0.0, rate_before_stall=rate)
    taught = predict(
        meat, 200.0, H, RULES, stall_start=0.0, rate_before_stall=rate, calibration=learned
    )
    fastest = 40.0 / rate
    assert plain.seconds == pytest.approx(RULES.stall_expected - H + fastest / POST_STALL_PACE)
    assert taught.seconds == pytest.approx(2 * H - H + fastest / 0.5)


def test_a_learned_stall_is_the_one_ahead_and_a_learned_pace_scales_the_climb() -> None:
    meat = samples(lambda t: newton(t, pit=250.0), 0, 2 * H)
    pit = samples(lambda t: 250.0, 0, 2 * H)
    short = Calibration(past_cooks=1, stall_seconds=H)
    plain = predict(meat, 203.0, 2 * H, RULES, pit=pit, stall_ahead=True)
    taught = predict(meat, 203.0, 2 * H, RULES, pit=pit, stall_ahead=True, calibration=short)
    assert plain.seconds is not None and taught.seconds is not None
    assert plain.seconds - taught.seconds == pytest.approx(RULES.stall_expected - H)
    climb = predict(meat, 203.0, 2 * H, RULES, pit=pit)
    slow = predict(meat, 203.0, 2 * H, RULES, pit=pit, calibration=Calibration(pace=1.25))
    assert climb.method is Method.NEWTON and climb.seconds is not None
    assert slow.seconds == pytest.approx(1.25 * climb.seconds)
    assert slow.plain == pytest.approx(climb.seconds)  # what is learned from is uncalibrated
    assert slow.high is not None and climb.high is not None and slow.high > climb.high


def test_after_a_stall_the_pace_counts_far_from_the_target_and_not_in_its_last_hour() -> None:
    """The pace is learned over the whole climb after a stall (its first fits are the ones
    off); within two windows of the target the live fit has the rest alone."""
    meat = samples(lambda t: newton(t, pit=250.0), 0, 5 * H)
    pit = samples(lambda t: 250.0, 0, 5 * H)
    slow = Calibration(past_cooks=1, pace=1.25)

    def both(now: float, since: float | None) -> tuple[float, float]:
        plain = predict(meat, 215.0, now, RULES, pit=pit, since=since).seconds
        taught = predict(meat, 215.0, now, RULES, pit=pit, since=since, calibration=slow).seconds
        assert plain is not None and taught is not None
        return plain, taught

    plain, taught = both(1 * H, since=0.0)  # 3.5 h to go: the pace in full
    assert plain > 4 * RULES.window and taught == pytest.approx(1.25 * plain)
    plain, taught = both(3.9 * H, since=2 * H)  # 35 min to go: the live fit alone
    assert plain < 2 * RULES.window and taught == pytest.approx(plain)
    plain, taught = both(3.9 * H, since=None)  # no stall: the pace to the end
    assert taught == pytest.approx(1.25 * plain)


def test_the_ready_event_carries_the_cooks_lesson_and_estimates_say_how_many_cooks() -> None:
    tracker = CookTracker(RULES)
    steps = run(tracker, brisket, 0, 11 * H)
    (ready,) = [e for s in steps for e in s.events if e.kind is CookEventKind.READY]
    assert ready.target == 203.0
    # brisket(): 30 °F/h before the stall, 13 °F/h after it
    assert ready.climb_pace == pytest.approx(13.0 / 30.0, rel=0.15)
    assert ready.pace is not None and 0.6 < ready.pace < 1.6
    assert all(e.past_cooks == 0 for s in steps for e in s.estimates)

    taught = CookTracker(RULES)
    targets = {(SERIAL, 2): Measurement(203.0, Unit.FAHRENHEIT)}
    calibrations = {(SERIAL, 2): Calibration(past_cooks=3, stall_seconds=2 * H)}
    step = None
    for t in range(0, int(5 * H), int(MIN)):
        step = taught.step(
            CookBatch(
                now=T0 + timedelta(seconds=t),
                readings=[reading(t, brisket(t)), reading(t, 250.0, channel=1)],
                targets=targets,
                pits={SERIAL: 1},
                calibrations=calibrations,
            )
        )
    assert step is not None
    (estimate,) = step.estimates
    untaught = steps[int(5 * H / MIN) - 1].estimates[0]
    assert estimate.past_cooks == 3 and estimate.stalled and untaught.stalled
    assert estimate.done_at is not None and untaught.done_at is not None
    assert untaught.done_at - estimate.done_at == timedelta(hours=1)  # a 2 h stall, not 3 h


def test_a_declared_reverse_sear_expects_the_configured_sear_unless_past_cooks_taught_one() -> None:
    meat = samples(lambda t: newton(t, pit=225.0, k=1 / H), 0, 0.5 * H)
    pit = samples(lambda t: 225.0, 0, 0.5 * H)
    now = 0.5 * H
    plain = predict(meat, 130.0, now, RULES, pit=pit)
    told = declared(NO_CALIBRATION, CookMethod.REVERSE_SEAR, target=130.0, rules=RULES)
    assert told.sear_at == 130.0 - RULES.sear_below and told.sear_seconds == RULES.sear_time
    seared = predict(meat, 130.0, now, RULES, pit=pit, calibration=told)
    to_sear = predict(meat, 130.0 - RULES.sear_below, now, RULES, pit=pit)
    assert plain.seconds is not None and to_sear.seconds is not None
    assert seared.seconds == pytest.approx(to_sear.seconds + RULES.sear_time)
    assert (
        seared.seconds is not None and seared.seconds < plain.seconds
    )  # the sear finishes it sooner than the slow climb
    assert seared.high is not None and seared.high >= plain.seconds  # "no sear this time"
    assert declared(NO_CALIBRATION, CookMethod.AUTO, target=130.0, rules=RULES) == NO_CALIBRATION
    taught = Calibration(past_cooks=1, sear_at=110.0, sear_seconds=600.0)
    assert declared(taught, CookMethod.REVERSE_SEAR, target=130.0, rules=RULES) == taught
