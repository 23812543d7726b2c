"""Default session names ("Sat 14 Jun, Low and slow") and duration formatting (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, tzinfo

from grillstats_bridge.domain import (
    Unit,
    convert_temperature,
)
from grillstats_bridge.sessions.model import NAME_MAX, ProbeSummary, SessionType

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# The hottest probe's time-weighted mean (°F) names the cook: in practice that probe is
# the pit. The mean includes the fire-up and the cooling, so it sits below the set
# temperature: low-and-slow pits at 225-275 °F average 205-245, hot-and-fast ones at
# 325-375 °F average 290-330.
_KINDS = ((425.0, "Grilling"), (275.0, "Hot and fast"), (180.0, "Low and slow"))


def cook_kind(probes: Iterable[ProbeSummary]) -> str:
    """What kind of cook the hottest probe's time-weighted mean says it was."""
    means = [
        convert_temperature(p.average, p.unit, Unit.FAHRENHEIT)
        for p in probes
        if p.average is not None and p.unit.is_temperature
    ]
    hottest = max(means, default=None)
    if hottest is not None:
        for floor, kind in _KINDS:
            if hottest >= floor:
                return kind
    return "Cook"


def format_duration(duration: timedelta) -> str:
    """``45 min``, ``3 h``, ``12 h 30 min`` (to the minute)."""
    minutes = round(duration.total_seconds() / 60)
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def format_day(when: datetime, tz: tzinfo) -> str:
    """``Sat 12 Jul 2026`` in ``tz``, whatever the process locale."""
    local = when.astimezone(tz)
    return f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year}"


def session_name(
    session_type: SessionType,
    start: datetime,
    tz: tzinfo,
    *,
    end: datetime | None = None,
    probes: Iterable[ProbeSummary] = (),
) -> str:
    """A generated name: ``Cook · Sat 12 Jul 2026 18:05`` while it runs,
    ``Low and slow · 12 h 30 min · Sat 12 Jul 2026`` once it has ended."""
    if end is None:
        local = start.astimezone(tz)
        prefix = "Manual cook" if session_type is SessionType.MANUAL else "Cook"
        return f"{prefix} · {format_day(start, tz)} {local:%H:%M}"[:NAME_MAX]
    return f"{cook_kind(probes)} · {format_duration(end - start)} · {format_day(start, tz)}"[
        :NAME_MAX
    ]
