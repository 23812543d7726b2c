"""Stall detection (pure): a probe that rises at most ``stall_rise`` over ``stall_time``
inside ``stall_low``..``stall_high`` is stalled.

The rise over the window is the least-squares slope of its readings times its length,
so one noisy reading or a lid opening does not start or end a stall. A stall ends when
the rise passes 1.5 times the threshold (hysteresis against noise), when the probe
leaves the band, or when it falls faster than a stall does (it is cooling: pulled off
the heat). Its start is dated back to the start of the window that showed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grillstats_bridge.cook.model import Rules, Sample

END_FACTOR = 1.5  # a stall ends once it rises this many times the threshold
COVERAGE = 0.9  # the readings must span this share of stall_time
SMOOTH = 300.0  # seconds of readings averaged for "the temperature now"


@dataclass(frozen=True, slots=True)
class Stall:
    """A probe's stall state: ``start`` when stalled, else None."""

    start: float | None = None

    @property
    def stalled(self) -> bool:
        return self.start is not None


def slope(samples: Sequence[Sample]) -> float | None:
    """Least-squares degrees per second of ``samples``; None with fewer than 2 times."""
    n = len(samples)
    if n < 2:
        return None
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    sxx = sum((t - mt) ** 2 for t, _ in samples)
    if sxx <= 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in samples) / sxx


def level(samples: Sequence[Sample], now: float) -> float | None:
    """The temperature now: the mean of the last ``SMOOTH`` seconds of readings."""
    recent = [v for t, v in samples_since(samples, now - SMOOTH)]
    return sum(recent) / len(recent) if recent else None


def samples_since(samples: Sequence[Sample], start: float) -> Sequence[Sample]:
    """The samples from ``start`` on, found from the end (samples are in time order: the
    tracker's are; the fits take the latest few of a longer history)."""
    i = len(samples)
    while i > 0 and samples[i - 1][0] >= start:
        i -= 1
    return samples[i:]


def rise(samples: Sequence[Sample], now: float, span: float) -> float | None:
    """Degrees gained over the last ``span`` seconds (fitted), None if not covered."""
    window = [(t, v) for t, v in samples_since(samples, now - span) if t <= now]
    if not window or now - window[0][0] < COVERAGE * span:
        return None
    rate = slope(window)
    return None if rate is None else rate * span


def detect(samples: Sequence[Sample], now: float, stall: Stall, rules: Rules) -> Stall:
    """The stall state after ``samples`` (oldest first, up to ``now``)."""
    temperature = level(samples, now)
    gained = rise(samples, now, rules.stall_time)
    if temperature is None or gained is None:
        return Stall()
    in_band = rules.stall_low <= temperature <= rules.stall_high
    cooling = gained < -2 * rules.stall_rise
    if stall.stalled:
        ended = not in_band or cooling or gained > END_FACTOR * rules.stall_rise
        return Stall() if ended else stall
    if in_band and not cooling and gained <= rules.stall_rise:
        return Stall(start=now - rules.stall_time)
    return Stall()
