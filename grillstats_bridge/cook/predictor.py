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
seen before it (or the person's usual share); the band reaches
from "the stall ends now and the old pace resumes" to "it lasts half as long again and
the climb takes twice as long". Before a stall its expected length is added.

What is fitted: after a pit stepped up (a sear, a raised pit, a preheat's end) the
readings since, toward the new level; from the window's fastest rise on once the curve
clearly slowed (the centre's lag before it); near the end the last "time left" of
readings. Levels that fit about as well as the best are averaged into the estimate and
widen the band. A person's past cooks (``Calibration``) set the stall's length, the
climb after it, the plain climb's pace and an expected sear; without past cooks, a low
target under a pit below a sear's heat has the band's early side at "a sear now" (a
reverse sear). See docs/cook.md.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

from grillstats_bridge.cook.detector import samples_since
from grillstats_bridge.cook.model import NO_CALIBRATION, Calibration, Method, Rules, Sample
from grillstats_bridge.domain import Unit, convert_temperature

MIN_SAMPLES = 4
PIT_MARGIN = 5.0  # degrees the pit must stay above the target and the meat for Newton
MIN_RATE = 0.5 / 3600.0  # degrees per second: slower than this gives no estimate
MIN_BAND = 300.0  # seconds either side of the estimate, at least...
BAND_SHARE = 0.15  # ...and this share of the time left before it...
BAND_SHARE_LATE = 0.5  # ...and this share after it: meat slows near the end more than
# Newton's law says (its surface dries and cools), so estimates err early more than late
ASYMPTOTE_GAIN = 0.9  # a lower asymptote must fit this much better than the one above it
AVERAGE_SPAN = 2400.0  # seconds of readings the estimate needs to average over the levels
AVERAGE_SHARPNESS = 6.0  # a level's weight: e^(-this x how much worse it fits, as a share)
PLAUSIBLE = 2.0  # a level fits about as well as the best: its squared residual at most this
ASYMPTOTE_SHARES = (1.0, 0.7, 0.5, 0.35, 0.25, 0.15, 0.1, 0.05)  # of the way from target to pit
PIT_STEP = 0.2  # the pit stepped up: by this share of its lead over the meat at least...
PIT_STEP_MIN = 15.0  # ...and at least this many °F...
PIT_BEFORE = 1200.0  # ...after being lower for this many seconds (a lid opening is shorter)
AFTER_STALL = 1.0  # the climb after a stall is fitted alone once it spans this many windows
HORIZON = 1.0  # near the end the fit takes the last this many times the time left
FASTEST_SPAN = 900.0  # seconds: the rate around each reading, over this...
FASTEST_DROP = 0.85  # ...has slowed clearly when the latest is under this share of the fastest
SEAR_MARGIN = 15.0  # °F: a step up this close to the usual sear temperature is the sear
SEAR_PIT = 500.0  # °F: a sear, the grill this hot, can finish...
SEAR_TARGET_MAX = 145.0  # °F: ...meat with a target at most this (beef, lamb, pork, fish)
STALL_LEFT_SHARE = 0.25  # a stall past its expected length still has this share left
PACE_NEAR = 2.0  # windows: after a stall, closer to the target than this the pace counts not,
PACE_FAR = 4.0  # ...from this on fully, in between in proportion (see _pace_share)


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
    pit_step: float | None = None  # the pit stepped up then (inside the window)


@dataclass(frozen=True, slots=True)
class Line:
    """A least-squares line ``y = a + b x`` with the standard error of ``b``."""

    a: float
    b: float
    se_b: float


def fit_line(xs: Sequence[float], ys: Sequence[float], first: Line | None = None) -> Line | None:
    """Least squares, refitted once without points over 3 robust deviations; None if flat.
    ``first``: the plain least squares of these points, when already computed."""
    line = _lsq(xs, ys) if first is None else first
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
    spread = _spread(xs)
    return None if spread is None else _lsq_on(spread, xs, ys)


_Spread = tuple[float, list[float], float]  # the xs' mean, each x minus it, their sxx
_Fit = tuple[list[float], list[float], Line | None]  # xs, ys and their plain least squares


def _spread(xs: Sequence[float]) -> _Spread | None:
    """What :func:`_lsq` computes of the xs alone: shared by fits of the same xs."""
    n = len(xs)
    if n < 2:
        return None
    mx = sum(xs) / n
    dx = [x - mx for x in xs]
    sxx = sum([d**2 for d in dx])
    return None if sxx <= 0 else (mx, dx, sxx)


def _lsq_on(spread: _Spread, xs: Sequence[float], ys: Sequence[float]) -> Line:
    """:func:`_lsq` with the xs' :func:`_spread` given (the same sums in the same order)."""
    mx, dx, sxx = spread
    n = len(dx)
    my = sum(ys) / n
    b = sum([d * (y - my) for d, y in zip(dx, ys, strict=True)]) / sxx
    a = my - b * mx
    sse = sum([(y - a - b * x) ** 2 for x, y in zip(xs, ys, strict=True)])
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
    window: Sequence[Sample] = [(t, v) for t, v in samples_since(meat, start) if t <= now]
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
    toward = None  # the pit stepped up: the level the meat heads for from now on
    change = _pit_change(pit, window[0][0], now, current, rules)
    if change is not None:
        since_change, new_level = change
        after = [s for s in window if s[0] >= since_change]
        if len(after) >= MIN_SAMPLES and now - after[0][0] >= rules.min_span:
            window, pit_level = after, new_level  # refit on the readings since the change
        else:  # too few yet: the meat's k from before it, heading for the new level
            before = [s for s in window if s[0] < since_change]
            if len(before) >= MIN_SAMPLES:
                window, toward = before, new_level
                pit_level = _pit_level([p for p in pit if p[0] < since_change], now, rules)
    ahead = stall_ahead and (pit_level is None or pit_level <= rules.stall_pit_max)
    if toward is None:
        window = _after_fastest(window, rules)
    prediction = _fit(window, target, now, pit_level, current, ahead=ahead, toward=toward)
    if not ahead and toward is None and prediction.seconds:
        # Near the end the recent bend says the most: refit on the last readings, no more
        # than HORIZON times the time left (at least min_span)
        span = max(HORIZON * prediction.seconds, rules.min_span)
        recent = [s for s in window if s[0] >= now - span]
        if MIN_SAMPLES <= len(recent) < len(window):
            again = _fit(recent, target, now, pit_level, current, ahead=False, toward=None)
            if again.seconds is not None:
                prediction = again
    if ahead:
        return _before_stall(prediction, stall)
    if since is not None and rate_before_stall is not None and rate_before_stall >= MIN_RATE:
        fitted = now - since
        prediction = _after_stall(
            prediction, current, target, fitted, rate_before_stall, rules, calibration
        )
    step = change[0] if change is not None else None
    seared = False  # the pit stepped up near the person's usual sear temperature
    if step is not None and calibration.sear_at is not None:
        then = min(meat, key=lambda s: abs(s[0] - step))[1]
        seared = then >= calibration.sear_at - SEAR_MARGIN * rules.unit_degree
    if not seared and calibration.sear_at is not None and calibration.sear_seconds:
        sear = _sear(window, now, pit_level, current, calibration)
        if sear is not None:
            return _with_sear(prediction, sear)
    if calibration.past_cooks == 0 and pit_level is not None:
        prediction = _may_sear(prediction, target, pit_level, rules)
    pace = calibration.pace
    if since is not None:  # the climb after a stall: its pace fades near the end
        pace **= _pace_share(prediction, rules)
    return replace(_paced(prediction, pace), pit_step=step)


def _may_sear(prediction: Prediction, target: float, pit: float, rules: Rules) -> Prediction:
    """A low target under a pit below a sear's heat, of a person whose habits are unknown
    (no past cooks): the band's early side reaches "the pit raised to a sear now" (a
    reverse sear). The meat keeps its heat transfer coefficient (its rate now over its
    lead on the pit), toward ``SEAR_PIT``; the estimate and the late side stay."""
    sear_pit = convert_temperature(SEAR_PIT, Unit.FAHRENHEIT, rules.unit)
    low_target = convert_temperature(SEAR_TARGET_MAX, Unit.FAHRENHEIT, rules.unit)
    value, rate, low = prediction.value, prediction.rate, prediction.low
    if value is None or rate is None or low is None or target > low_target:
        return prediction
    if rate <= 0 or not value < target < pit < sear_pit:
        return prediction
    k = rate / 3600.0 / (pit - value)
    seared = math.log((sear_pit - value) / (sear_pit - target)) / k
    return replace(prediction, low=min(low, seared))


def _sear(
    window: Sequence[Sample],
    now: float,
    pit_level: float | None,
    current: float,
    calibration: Calibration,
) -> float | None:
    """Seconds to the target for a person who sears (past cooks): the climb to the
    temperature they raise the pit at, then their usual time from there."""
    at, after = calibration.sear_at, calibration.sear_seconds
    if at is None or after is None:
        return None
    if current >= at:
        return after  # the sear is due
    climb = _fit(window, at, now, pit_level, current, ahead=False, toward=None)
    return None if climb.seconds is None else climb.seconds + after


def _with_sear(prediction: Prediction, sear: float) -> Prediction:
    """The estimate with the person's usual sear; the band still holds "no sear this time"
    (the plain climb's estimate) and "the sear now"."""
    if prediction.seconds is None or prediction.low is None or prediction.high is None:
        return replace(prediction, seconds=sear, low=sear * (1 - BAND_SHARE), high=sear * 1.5)
    seconds = min(sear, prediction.seconds)
    low, high = _band(seconds, [sear, prediction.seconds])
    return replace(prediction, seconds=seconds, low=min(low, prediction.low), high=high, plain=None)


def _after_stall(
    prediction: Prediction,
    current: float,
    target: float,
    fitted: float,
    rate: float,
    rules: Rules,
    calibration: Calibration,
) -> Prediction:
    """Just after a stall its climb has few readings yet, and speeds up as it leaves the
    stall: until the readings since the stall cover ``AFTER_STALL`` windows the band
    reaches down to "the old pace resumes" and up to the estimate inside the stall (the
    climb at a share of the rate before it), as the band inside the stall did."""
    if fitted >= AFTER_STALL * rules.window:
        return prediction
    fastest = (target - current) / rate
    prior = fastest / calibration.climb_pace
    if prediction.seconds is None or prediction.low is None or prediction.high is None:
        return replace(prediction, method=Method.STALL, seconds=prior, low=fastest, high=2 * prior)
    return replace(
        prediction,
        low=min(prediction.low, fastest),
        high=max(prediction.high, prior),
    )


def _fit(
    window: Sequence[Sample],
    target: float,
    now: float,
    pit_level: float | None,
    current: float,
    *,
    ahead: bool,
    toward: float | None,
) -> Prediction:
    """Newton's law toward the pit (or the level the window bends to), else the rate."""
    prediction = None
    if pit_level is not None and pit_level > max(target, current) + PIT_MARGIN:
        # Before a stall the curve bends toward the stall, not toward an asymptote.
        level, others, fit = pit_level, list[tuple[float, float]](), None
        if not ahead and toward is None:
            level, others, fit = _asymptote(window, target, now, pit_level)
        prediction = _newton(window, target, now, level, toward=toward, current=current, fit=fit)
        if (
            prediction is not None
            and prediction.seconds is not None
            and prediction.seconds > 0
            and prediction.low is not None
            and prediction.high is not None
        ):
            best_weight = 1.0 if not others else max(1.0, *(w for _, w in others))
            times, weights = [prediction.seconds], [best_weight]
            for seconds, weight in others:  # the levels that fit about as well
                if seconds > 0:
                    times.append(seconds)
                    weights.append(weight)
            mean = prediction.seconds
            if window[-1][0] - window[0][0] >= AVERAGE_SPAN:  # enough to judge the bend
                logs = sum(w * math.log(t) for t, w in zip(times, weights, strict=True))
                mean = math.exp(logs / sum(weights))
            prediction = replace(
                prediction,
                seconds=mean,
                low=min(prediction.low, *times),
                high=max(prediction.high, *times),
            )
    if prediction is None:
        prediction = _linear(window, target, now)
    return prediction


def _pace_share(prediction: Prediction, rules: Rules) -> float:
    """How much of the person's pace an estimate of the climb after a stall takes (0..1,
    on its logarithm). The pace is learned over the whole climb after the stall, where the
    first fits, on few readings of a curve still speeding up, are the ones that are off;
    near the end the live fit has windows of readings since the stall and says the rest
    alone. Closer than ``PACE_NEAR`` windows nothing, from ``PACE_FAR`` on all of it."""
    if prediction.seconds is None:
        return 1.0
    share = (prediction.seconds / rules.window - PACE_NEAR) / (PACE_FAR - PACE_NEAR)
    return min(max(share, 0.0), 1.0)


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
    values = [v for t, v in samples_since(pit, now - rules.window) if t <= now]
    return statistics.median(values) if len(values) >= MIN_SAMPLES else None


def _pit_change(
    pit: Sequence[Sample], start: float, now: float, current: float, rules: Rules
) -> tuple[float, float] | None:
    """The pit stepped up inside the window (a sear, the pit raised, the end of a preheat):
    (when its new level began, that level), else None. The new level is the median of
    the last three readings; the step is a share of the pit's lead over the meat; the
    step began after the last reading more than that below, if the pit was below it over
    ``PIT_BEFORE`` before that reading too (a lid opening is a dip inside one level)."""
    values = [(t, v) for t, v in samples_since(pit, start) if t <= now]
    if len(values) < 2 * MIN_SAMPLES:
        return None
    level = statistics.median(v for _, v in values[-3:])
    step = max(PIT_STEP * (level - current), PIT_STEP_MIN * rules.unit_degree)
    low = next((i for i in range(len(values) - 1, -1, -1) if values[i][1] < level - step), None)
    if low is None or low == len(values) - 1:
        return None
    when = values[low][0]
    if when - pit[0][0] < PIT_BEFORE / 4:
        return None  # too little seen before it to tell a step from a lid opening
    before = [v for t, v in pit if when - PIT_BEFORE <= t <= when]  # also before the window
    if len(before) < 2 or statistics.median(before) >= level - step:
        return None
    return when, statistics.median(v for t, v in values if t > when)


def _after_fastest(window: Sequence[Sample], rules: Rules) -> Sequence[Sample]:
    """The window from its fastest rise on, if it has slowed clearly since: a probe's
    centre lags its surface at first (the curve bends up), then heads for its level as
    Newton's law says (it bends down); only the second part fits the law."""
    rates: list[tuple[float, Line]] = []  # (time, the rate around it)
    times = [t for t, _ in window]
    sums = _prefix_sums(window)
    half, covered = FASTEST_SPAN / 2, FASTEST_SPAN / 2.5
    left, right = bisect.bisect_left, bisect.bisect_right
    for t in times:
        i = left(times, t - half)
        j = right(times, t + half)
        if times[i] <= t - covered and times[j - 1] >= t + covered:
            line = _lsq_between(sums, i, j)
            if line is not None:
                rates.append((t, line))
    if len(rates) < 2:
        return window
    when, fastest = max(rates, key=lambda r: r[1].b)
    latest = rates[-1][1]
    slowed = fastest.b - latest.b  # clearly: a share of the fastest and beyond the noise
    noise = 3 * math.hypot(fastest.se_b, latest.se_b)
    if fastest.b <= 0 or slowed < (1 - FASTEST_DROP) * fastest.b or slowed < noise:
        return window
    after = [s for s in window if s[0] >= when]
    if len(after) < MIN_SAMPLES or after[-1][0] - after[0][0] < rules.min_span:
        return window
    return after


def _prefix_sums(window: Sequence[Sample]) -> list[tuple[float, float, float, float, float]]:
    """Running sums of t, v, t², tv and v² (t from the first reading): any stretch's least
    squares line in constant time."""
    t0 = window[0][0]
    out = [(0.0, 0.0, 0.0, 0.0, 0.0)]
    st = sv = stt = stv = svv = 0.0
    for t, v in window:
        x = t - t0
        st, sv, stt, stv, svv = st + x, sv + v, stt + x * x, stv + x * v, svv + v * v
        out.append((st, sv, stt, stv, svv))
    return out


def _lsq_between(
    sums: Sequence[tuple[float, float, float, float, float]], i: int, j: int
) -> Line | None:
    """:func:`_lsq` of the readings ``i`` to ``j - 1`` from :func:`_prefix_sums` (the slope
    and its standard error; the intercept is not needed)."""
    n = j - i
    if n < 3:
        return None
    a, b = sums[i], sums[j]
    st, sv, stt, stv, svv = b[0] - a[0], b[1] - a[1], b[2] - a[2], b[3] - a[3], b[4] - a[4]
    sxx = stt - st * st / n
    if sxx <= 0:
        return None
    sxy = stv - st * sv / n
    slope = sxy / sxx
    sse = max(svv - sv * sv / n - slope * sxy, 0.0)
    return Line(0.0, slope, math.sqrt(sse / (n - 2) / sxx))


def _asymptote(
    window: Sequence[Sample], target: float, now: float, pit: float
) -> tuple[float, list[tuple[float, float]], _Fit | None]:
    """The temperature the meat heads for (with the seconds to the target and the weight
    of each other level that fits about as well, and its fit for :func:`_newton`): the
    pit, or lower where the window's curve bends more than heating toward the pit would
    (a wet surface cools: the meat slows sooner).
    Of the pit and a few levels between it and the target, the one whose Newton fit leaves
    the smallest squared residual in degrees (a lower one must fit ``ASYMPTOTE_GAIN``
    better); with the levels that fit about as well (``PLAUSIBLE``): the band's."""
    xs = [t - now for t, _ in window]
    values = [v for _, v in window]
    top = max(values, default=-math.inf)
    spread = _spread(xs)  # the same xs for every level: their sums once
    best, best_sse, best_fit = pit, math.inf, None
    fits: list[tuple[float, float, float | None]] = []
    for share in ASYMPTOTE_SHARES:
        level = target + PIT_MARGIN + share * (pit - target - PIT_MARGIN)
        if top >= level - 1.0 or spread is None:  # (no reading at the level or above it)
            continue
        ys = [math.log(level - v) for v in values]
        line = _lsq_on(spread, xs, ys)
        a, b = line.a, line.b
        sse = sum(
            [(v - (level - math.exp(a + b * x))) ** 2 for x, v in zip(xs, values, strict=True)]
        )
        fits.append((level, sse, _seconds_to(level, line, target)))
        if sse < best_sse * ASYMPTOTE_GAIN:
            best, best_sse, best_fit = level, sse, (xs, ys, line)
    least = min((sse for _, sse, _ in fits), default=0.0)
    if least <= 0:
        return best, [], best_fit
    others = [
        (seconds, math.exp(-AVERAGE_SHARPNESS * (sse / least - 1.0)))
        for level, sse, seconds in fits
        if sse <= PLAUSIBLE * least and level != best and seconds is not None
    ]
    return best, others, best_fit


def _seconds_to(level: float, line: Line, target: float) -> float | None:
    """Seconds to the target on a fitted ``ln(level - T)`` line (None: no positive time)."""
    k, fitted = -line.b, level - math.exp(line.a)
    if k <= 0 or fitted >= target:
        return None
    return math.log((level - fitted) / (level - target)) / k


def _newton(
    window: Sequence[Sample],
    target: float,
    now: float,
    pit: float,
    *,
    toward: float | None = None,
    current: float | None = None,
    fit: _Fit | None = None,
) -> Prediction | None:
    """Newton's law fitted on ``ln(pit - T)``; None when the fit is poor. ``toward``: the
    pit has since stepped up to this; the meat's fitted ``k`` carries it from ``current``.
    ``fit``: the xs, ys and plain least squares of this window and pit (``_asymptote``'s)."""
    if fit is None:
        if any(v >= pit - 1.0 for _, v in window):
            return None
        xs = [t - now for t, _ in window]
        fit = xs, [math.log(pit - v) for _, v in window], None
    xs, ys, first = fit
    line = fit_line(xs, ys, first)
    if line is None:
        return None
    k = -line.b
    if k <= 0 or k < 2 * line.se_b:
        return None
    fitted = pit - math.exp(line.a)  # the temperature now, on the fitted curve
    if toward is not None and current is not None and toward > max(target, current):
        pit, fitted = toward, current
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
