"""When will a probe reach its target (pure): a fit of its recent readings, with a band.

Meat heats toward the pit like a body in an oven: Newton's law of heating,
``T(t) = Tpit - (Tpit - T0) e^(-k t)``, so ``ln(Tpit - T)`` falls on a straight line of
slope ``-k``. Over a sliding window the fit is a least-squares line through those
logarithms, refitted once without the readings more than three robust deviations off
(a lid opening, a noisy reading); ``Tpit`` is the pit's median, or a lower level where
that fits the window's bend better (the meat's wet surface cools it). Without a pit,
or when the fit is poor (``k`` not positive or less than twice its standard error, the
target not below the pit), the recent rate is extrapolated instead. The band comes
from the fit's own uncertainty (``k`` or the rate plus or minus two standard errors)
and from the spread between the window's halves fitted alone. Inside a stall the
estimate is the stall's expected remaining length plus the climb at 70 % of the rate
seen before it (wet meat that has dried its surface climbs slower); the band reaches
from "the stall ends now and the old pace resumes" to "it lasts half as long again and
the climb takes twice as long". Before a stall its expected length is added. See
docs/cook.md.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

from grillstats_bridge.cook.model import NO_CALIBRATION, Calibration, Method, Rules, Sample

MIN_SAMPLES = 4
PIT_MARGIN = 5.0  # degrees the pit must stay above the target and the meat for Newton
MIN_RATE = 0.5 / 3600.0  # degrees per second: slower than this gives no estimate
MIN_BAND = 300.0  # seconds either side of the estimate, at least...
BAND_SHARE = 0.15  # ...and this share of the time left before it...
BAND_SHARE_LATE = 0.35  # ...and this share after it: meat slows near the end more than
# Newton's law says (its surface dries and cools), so estimates err early more than late
ASYMPTOTE_GAIN = 0.9  # a lower asymptote must fit this much better than the one above it
STALL_LEFT_SHARE = 0.25  # a stall past its expected length still has this share left


@dataclass(frozen=True, slots=True)
class Prediction:
    """Seconds from now to the target (None: no estimate), with the band and the method."""

    method: Method
    seconds: float | None = None
    low: float | None = None
    high: float | None = None
    rate: float | None = None  # degrees per hour now
    value: float | None = None  # the fitted temperature now
    plain: float | None = None  # a plain climb (no stall in it): its seconds uncalibrated


@dataclass(frozen=True, slots=True)
class Line:
    """A least-squares line ``y = a + b x`` with the standard error of ``b``."""

    a: float
    b: float
    se_b: float


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> Line | None:
    """Least squares, refitted once without points over 3 robust deviations; None if flat."""
    line = _lsq(xs, ys)
    if line is None:
        return None
    residuals = [y - (line.a + line.b * x) for x, y in zip(xs, ys, strict=True)]
    mad = statistics.median(abs(r) for r in residuals) * 1.4826
    if mad > 0:
        keep = [i for i, r in enumerate(residuals) if abs(r) <= 3 * mad]
        if MIN_SAMPLES <= len(keep) < len(xs):
            refit = _lsq([xs[i] for i in keep], [ys[i] for i in keep])
            if refit is not None:
                return refit
    return line


def _lsq(xs: Sequence[float], ys: Sequence[float]) -> Line | None:
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    a = my - b * mx
    sse = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys, strict=True))
    se_b = math.sqrt(sse / (n - 2) / sxx) if n > 2 else math.inf
    return Line(a, b, se_b)


def predict(
    meat: Sequence[Sample],
    target: float,
    now: float,
    rules: Rules,
    *,
    pit: Sequence[Sample] = (),
    stall_start: float | None = None,
    rate_before_stall: float | None = None,
    since: float | None = None,
    stall_ahead: bool = False,
    calibration: Calibration = NO_CALIBRATION,
) -> Prediction:
    """Predict from the readings (oldest first, ``now`` is the latest time) of one probe.

    ``since``: fit nothing older (a stall ended then: the climb after it is another
    curve). ``stall_ahead``: the probe has a stall to go through before its target.
    ``calibration``: what the person's past cooks say (their stall, their pace).
    """
    start = now - rules.window if since is None else max(now - rules.window, since)
    window = [(t, v) for t, v in meat if start <= t <= now]
    if len(window) < MIN_SAMPLES or now - window[0][0] < rules.min_span:
        return Prediction(Method.NONE)
    # The probe's level now: its last five minutes of readings (the latest may be older
    # than ``now``: a probe that pushes on change is silent while nothing moves).
    latest = window[-1][0]
    current = statistics.median(v for t, v in window if t >= latest - 300.0)
    if current >= target:
        return Prediction(Method.DONE, 0.0, 0.0, 0.0, value=current)
    stall = calibration.stall_seconds or rules.stall_expected
    if stall_start is not None:
        return _through_stall(
            current, target, now - stall_start, stall, calibration.climb_pace, rate_before_stall
        )
    pit_level = _pit_level(pit, now, rules)
    prediction = None
    ahead = stall_ahead and (pit_level is None or pit_level <= rules.stall_pit_max)
    if pit_level is not None and pit_level > max(target, current) + PIT_MARGIN:
        # Before a stall the curve bends toward the stall, not toward an asymptote.
        level = pit_level if ahead else _asymptote(window, target, now, pit_level)
        prediction = _newton(window, target, now, level)
    if prediction is None:
        prediction = _linear(window, target, now)
    if ahead:
        return _before_stall(prediction, stall)
    return _paced(prediction, calibration.pace)


def _paced(prediction: Prediction, pace: float) -> Prediction:
    """A plain climb at the person's usual pace (actual / predicted, from past cooks)."""
    if prediction.seconds is None or prediction.low is None or prediction.high is None:
        return prediction
    return replace(
        prediction,
        seconds=prediction.seconds * pace,
        low=prediction.low * min(pace, 1.0),
        high=prediction.high * max(pace, 1.0),
        plain=prediction.seconds,
    )


def _before_stall(prediction: Prediction, stall: float) -> Prediction:
    """A climb with a stall still ahead: the stall's expected length added, the band from
    "no stall at all" to "half as long again"."""
    if prediction.seconds is None or prediction.low is None or prediction.high is None:
        return prediction
    return replace(
        prediction,
        seconds=prediction.seconds + stall,
        low=prediction.low,
        high=prediction.high + 1.5 * stall,
    )


def _pit_level(pit: Sequence[Sample], now: float, rules: Rules) -> float | None:
    """The pit's median over the window: lid openings and fan cycles do not move it."""
    values = [v for t, v in pit if now - rules.window <= t <= now]
    return statistics.median(values) if len(values) >= MIN_SAMPLES else None


def _asymptote(window: Sequence[Sample], target: float, now: float, pit: float) -> float:
    """The temperature the meat heads for: the pit, or lower where the window's curve bends
    more than heating toward the pit would (a wet surface cools: the meat slows sooner).
    Of the pit and a few levels between it and the target, the one whose Newton fit leaves
    the smallest squared residual in degrees."""
    xs = [t - now for t, _ in window]
    best, best_sse = pit, math.inf
    for share in (1.0, 0.7, 0.5, 0.35, 0.25, 0.15):
        level = target + PIT_MARGIN + share * (pit - target - PIT_MARGIN)
        if any(v >= level - 1.0 for _, v in window):
            continue
        line = _lsq(xs, [math.log(level - v) for _, v in window])
        if line is None:
            continue
        sse = sum(
            (v - (level - math.exp(line.a + line.b * x))) ** 2
            for x, (_, v) in zip(xs, window, strict=True)
        )
        if sse < best_sse * ASYMPTOTE_GAIN:
            best, best_sse = level, sse
    return best


def _newton(window: Sequence[Sample], target: float, now: float, pit: float) -> Prediction | None:
    """Newton's law fitted on ``ln(pit - T)``; None when the fit is poor."""
    if any(v >= pit - 1.0 for _, v in window):
        return None
    xs = [t - now for t, _ in window]
    ys = [math.log(pit - v) for _, v in window]
    line = fit_line(xs, ys)
    if line is None:
        return None
    k = -line.b
    if k <= 0 or k < 2 * line.se_b:
        return None
    fitted = pit - math.exp(line.a)  # the temperature now, on the fitted curve
    if fitted >= target:  # the readings say it is not there yet: the fit overshoots
        fitted = statistics.median(v for _, v in window[-MIN_SAMPLES:])
    gap = math.log((pit - fitted) / (pit - target))
    seconds = gap / k
    candidates = [gap / (k + 2 * line.se_b)]
    k_low = k - 2 * line.se_b
    if k_low > 0:
        candidates.append(gap / k_low)
    for half in _halves(window):
        hx = [t - now for t, _ in half]
        hline = fit_line(hx, [math.log(pit - v) for _, v in half])
        if hline is not None and -hline.b > 0:
            candidates.append(gap / -hline.b)
    low, high = _band(seconds, candidates)
    return Prediction(Method.NEWTON, seconds, low, high, k * (pit - fitted) * 3600.0, fitted)


def _linear(window: Sequence[Sample], target: float, now: float) -> Prediction:
    """The recent rate, extrapolated; no estimate when the probe is not rising."""
    xs = [t - now for t, _ in window]
    line = fit_line(xs, [v for _, v in window])
    if line is None or line.b < MIN_RATE:
        rate = None if line is None else line.b * 3600.0
        return Prediction(Method.NONE, rate=rate, value=None if line is None else line.a)
    fitted, rate = line.a, line.b
    if fitted >= target:  # the readings say it is not there yet: the fit overshoots
        fitted = statistics.median(v for _, v in window[-MIN_SAMPLES:])
    seconds = (target - fitted) / rate
    candidates = [(target - fitted) / (rate + 2 * line.se_b)]
    if rate - 2 * line.se_b > MIN_RATE:
        candidates.append((target - fitted) / (rate - 2 * line.se_b))
    for half in _halves(window):
        hline = fit_line([t - now for t, _ in half], [v for _, v in half])
        if hline is not None and hline.b > MIN_RATE:
            candidates.append((target - fitted) / hline.b)
    low, high = _band(seconds, candidates)
    return Prediction(Method.LINEAR, seconds, low, high, rate * 3600.0, fitted)


def _through_stall(
    current: float,
    target: float,
    stalled_for: float,
    stall: float,
    pace: float,
    rate: float | None,
) -> Prediction:
    """The stall's expected remaining length, then the climb at a share of the rate before it."""
    if rate is None or rate < MIN_RATE:
        return Prediction(Method.STALL, value=current)
    fastest = (target - current) / rate  # the stall ends now and the old pace resumes
    climb = fastest / pace
    left = max(stall - stalled_for, STALL_LEFT_SHARE * stall)
    seconds = left + climb
    high = seconds + 0.5 * stall + climb
    return Prediction(Method.STALL, seconds, fastest, high, 0.0, current)


def _halves(window: Sequence[Sample]) -> list[Sequence[Sample]]:
    middle = window[0][0] + (window[-1][0] - window[0][0]) / 2
    halves = [[s for s in window if s[0] <= middle], [s for s in window if s[0] > middle]]
    return [h for h in halves if len(h) >= MIN_SAMPLES]


def _band(seconds: float, candidates: Sequence[float]) -> tuple[float, float]:
    low = min([seconds - max(MIN_BAND, BAND_SHARE * seconds), *candidates])
    high = max([seconds + max(MIN_BAND, BAND_SHARE_LATE * seconds), *candidates])
    return max(low, 0.0), high
