"""What a person's past cooks teach the predictor (pure): their usual stall and pace.

A completed session whose probe reached its target leaves a :class:`PastCook`: its
target, how long its stall lasted, how fast the meat climbed after the stall against
before it (``climb_pace``), and how long the plain climb to the target took against what
the estimate said halfway (``pace``: actual / predicted time left). :func:`calibrate`
picks the cooks of the same user with a similar target (within ``SIMILAR_TARGET``; of
those on the same device when there are any: the same smoker), at most ``MAX_COOKS``
of the latest and none older than ``MAX_AGE``, and gives the medians, each pulled
toward the default by one imaginary cook of it (``PRIOR_WEIGHT``: one past cook moves
an estimate half-way, not all the way). A person who sears (most of the cooks chosen
raised the pit late, past half-way) is expected to sear again: at their usual meat
temperature, with their usual time from there to the target; one who declared the
probe's cook method a reverse sear (:func:`declared`) is expected to sear as the
configuration says until their cooks teach otherwise. See docs/cook.md.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from grillstats_bridge.cook.model import (
    NO_CALIBRATION,
    POST_STALL_PACE,
    Calibration,
    CookMethod,
    Rules,
)
from grillstats_bridge.domain import Unit

SIMILAR_TARGET = 10.0  # °F (5.6 °C): a past cook's target at most this far from this one
MAX_COOKS = 10  # the latest cooks used, at most
MAX_AGE = 2 * 365 * 86400.0  # seconds: older cooks are left out
PRIOR_WEIGHT = 1.0  # the default counts as this many cooks
PACE_RANGE = (0.6, 1.8)  # a learned pace is kept inside this (a broken session does not rule)
STALL_RANGE = (0.25, 3.0)  # a learned stall length, as a share of the configured one


@dataclass(frozen=True, slots=True)
class PastCook:
    """What one completed session says about its cook (temperatures in the rules' unit)."""

    serial: str
    target: float
    ended: float  # POSIX seconds
    stall_seconds: float | None = None
    climb_pace: float | None = None  # rate after the stall / rate before it
    pace: float | None = None  # actual / predicted time left of the plain climb
    sear_at: float | None = None  # the pit stepped up late (a sear) at this meat temperature...
    sear_seconds: float | None = None  # ...this long before the target


def calibrate(
    cooks: Iterable[PastCook], *, serial: str, target: float, now: float, rules: Rules
) -> Calibration:
    """The calibration of a probe of ``serial`` heading for ``target`` at ``now``."""
    similar = SIMILAR_TARGET if rules.unit is Unit.FAHRENHEIT else SIMILAR_TARGET / 1.8
    chosen = [
        c for c in cooks if abs(c.target - target) <= similar and now - MAX_AGE <= c.ended <= now
    ]
    same = [c for c in chosen if c.serial == serial]
    chosen = sorted(same or chosen, key=lambda c: c.ended)[-MAX_COOKS:]
    if not chosen:
        return NO_CALIBRATION
    stalls = [
        c.stall_seconds for c in chosen if c.stall_seconds is not None and c.stall_seconds > 0
    ]
    stall = None
    if stalls:
        low, high = (share * rules.stall_expected for share in STALL_RANGE)
        stall = _clip(_shrunk(stalls, rules.stall_expected), low, high)
    climbs = [c.climb_pace for c in chosen if c.climb_pace is not None and c.climb_pace > 0]
    paces = [c.pace for c in chosen if c.pace is not None and c.pace > 0]
    seared = [c for c in chosen if c.sear_at is not None and c.sear_seconds]
    sear_at = sear_seconds = None
    if 2 * len(seared) > len(chosen):  # most of their cooks: a habit
        sear_at = statistics.median(c.sear_at for c in seared if c.sear_at is not None)
        sear_seconds = statistics.median(c.sear_seconds or 0.0 for c in seared)
    return Calibration(
        past_cooks=len(chosen),
        stall_seconds=stall,
        climb_pace=_clip(_shrunk_log(climbs, POST_STALL_PACE), 0.3, 1.5),
        pace=_clip(_shrunk_log(paces, 1.0), *PACE_RANGE),
        sear_at=sear_at,
        sear_seconds=sear_seconds,
    )


def declared(
    calibration: Calibration, method: CookMethod, *, target: float, rules: Rules
) -> Calibration:
    """The calibration with what the person declared: a ``reverse_sear`` without past cooks
    that seared expects the configured sear (``cook.sear_below`` the target, done
    ``cook.sear_time`` later); a sear the person's past cooks taught wins."""
    if method is not CookMethod.REVERSE_SEAR or calibration.sear_at is not None:
        return calibration
    return replace(calibration, sear_at=target - rules.sear_below, sear_seconds=rules.sear_time)


def _shrunk(values: Sequence[float], default: float) -> float:
    """The median of ``values`` pulled toward ``default`` by ``PRIOR_WEIGHT`` cooks."""
    n = len(values)
    return (n * statistics.median(values) + PRIOR_WEIGHT * default) / (n + PRIOR_WEIGHT)


def _shrunk_log(values: Sequence[float], default: float) -> float:
    """:func:`_shrunk` of ratios, on their logarithms (twice as fast and half as fast
    weigh the same)."""
    if not values:
        return default
    return math.exp(_shrunk([math.log(v) for v in values], math.log(default)))


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)
