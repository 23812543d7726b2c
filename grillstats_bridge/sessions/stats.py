"""Per-session statistics: min, max and time-weighted mean per probe and pooled (pure).

In the session's unit; trapezoids between consecutive readings, never across an
unplugged or offline gap; the mean of the samples while there is no interval yet."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from grillstats_bridge.domain import (
    Unit,
    convert_temperature,
)
from grillstats_bridge.sessions.model import ProbeSummary


def _ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class _ProbeStats:
    """Running statistics of one probe; times are epoch seconds."""

    __slots__ = (
        "count",
        "first",
        "integral",
        "joined",
        "last",
        "maximum",
        "minimum",
        "seconds",
        "total",
        "value",
    )

    def __init__(self) -> None:
        self.count = 0
        self.minimum = math.inf
        self.maximum = -math.inf
        self.total = 0.0  # sum of samples: the mean before any interval exists
        self.integral = 0.0  # degree-seconds
        self.seconds = 0.0
        self.first: float | None = None
        self.last: float | None = None
        self.value = 0.0
        self.joined = False  # the next sample continues the current segment

    def add(self, t: float, v: float) -> bool:
        last = self.last
        if last is not None and t <= last:
            return False  # a replay or an out-of-order sample: already accounted for
        if self.joined and last is not None:
            dt = t - last
            self.integral += (self.value + v) * 0.5 * dt
            self.seconds += dt
        self.count += 1
        self.total += v
        if v < self.minimum:
            self.minimum = v
        if v > self.maximum:
            self.maximum = v
        if self.first is None:
            self.first = t
        self.last = t
        self.value = v
        self.joined = True
        return True

    @property
    def mean(self) -> float | None:
        if self.seconds > 0:
            return self.integral / self.seconds
        return self.total / self.count if self.count else None

    def copy(self) -> _ProbeStats:
        other = _ProbeStats()
        for name in self.__slots__:
            setattr(other, name, getattr(self, name))
        return other

    def to_list(self) -> list[Any]:
        return [
            self.count,
            self.minimum if self.count else None,
            self.maximum if self.count else None,
            self.total,
            self.integral,
            self.seconds,
            self.first,
            self.last,
            self.value,
            self.joined,
        ]

    @classmethod
    def from_list(cls, data: Sequence[Any]) -> _ProbeStats:
        stats = cls()
        count, minimum, maximum, total, integral, seconds, first, last, value, joined = data
        stats.count = int(count)
        stats.minimum = math.inf if minimum is None else float(minimum)
        stats.maximum = -math.inf if maximum is None else float(maximum)
        stats.total, stats.integral, stats.seconds = float(total), float(integral), float(seconds)
        stats.first = None if first is None else float(first)
        stats.last = None if last is None else float(last)
        stats.value, stats.joined = float(value), bool(joined)
        return stats


class _Stats:
    """A session's (or a pending cook's) statistics: one ``_ProbeStats`` per channel."""

    __slots__ = ("probes", "unit")

    def __init__(self, unit: Unit | None = None) -> None:
        self.unit = unit
        self.probes: dict[int, _ProbeStats] = {}

    def add(self, channel: int, t: float, value: float, unit: Unit) -> bool:
        if self.unit is None:
            self.unit = unit
        elif unit is not self.unit:
            value = convert_temperature(value, unit, self.unit)
        stats = self.probes.get(channel)
        if stats is None:
            stats = self.probes[channel] = _ProbeStats()
        return stats.add(t, value)

    def cut(self, channel: int | None = None) -> None:
        """No interval across what follows (an unplugged probe, an offline device)."""
        if channel is None:
            for stats in self.probes.values():
                stats.joined = False
        elif channel in self.probes:
            self.probes[channel].joined = False

    def copy(self) -> _Stats:
        other = _Stats(self.unit)
        other.probes = {ch: s.copy() for ch, s in self.probes.items()}
        return other

    def totals(self) -> tuple[float | None, float | None, float | None]:
        """Minimum, maximum and pooled time-weighted mean over every probe."""
        probes = [s for s in self.probes.values() if s.count]
        if not probes:
            return None, None, None
        seconds = sum(s.seconds for s in probes)
        if seconds > 0:
            mean = sum(s.integral for s in probes) / seconds
        else:
            mean = sum(s.total for s in probes) / sum(s.count for s in probes)
        return min(s.minimum for s in probes), max(s.maximum for s in probes), mean

    def summaries(self, labels: Mapping[int, str | None]) -> tuple[ProbeSummary, ...]:
        unit = self.unit or Unit.FAHRENHEIT
        return tuple(
            ProbeSummary(
                channel=ch,
                label=labels.get(ch),
                unit=unit,
                samples=s.count,
                minimum=s.minimum if s.count else None,
                maximum=s.maximum if s.count else None,
                average=s.mean,
                weighted_seconds=s.seconds,
                first_time=_ts(s.first) if s.first is not None else None,
                last_time=_ts(s.last) if s.last is not None else None,
                last_value=s.value if s.count else None,
            )
            for ch, s in sorted(self.probes.items())
            if s.count
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit.value if self.unit else None,
            "probes": {str(ch): s.to_list() for ch, s in self.probes.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _Stats:
        stats = cls(Unit(data["unit"]) if data.get("unit") else None)
        stats.probes = {int(ch): _ProbeStats.from_list(v) for ch, v in data["probes"].items()}
        return stats

    @classmethod
    def from_summaries(cls, unit: Unit | None, probes: Iterable[ProbeSummary]) -> _Stats:
        """Rebuild running statistics from stored summaries (a session adopted from the DB)."""
        stats = cls(unit)
        for p in probes:
            s = _ProbeStats()
            s.count = p.samples
            s.minimum = p.minimum if p.minimum is not None else math.inf
            s.maximum = p.maximum if p.maximum is not None else -math.inf
            mean = p.average or 0.0
            s.seconds = p.weighted_seconds
            s.integral = mean * p.weighted_seconds
            s.total = mean * p.samples
            s.first = p.first_time.timestamp() if p.first_time else None
            s.last = p.last_time.timestamp() if p.last_time else None
            s.value = p.last_value if p.last_value is not None else 0.0
            stats.probes[p.channel] = s
        return stats
