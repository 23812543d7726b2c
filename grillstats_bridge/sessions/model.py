"""The values of the sessions feature: types, snapshots, changes and the rules (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum
from typing import TYPE_CHECKING

from grillstats_bridge.domain import (
    Unit,
    ensure_utc,
)
from grillstats_bridge.errors import UsageError

if TYPE_CHECKING:
    from grillstats_bridge.config import SessionsConfig


STATE_VERSION = 1


NAME_MAX = 100  # grilling_sessions.name is String(100)


class SessionError(UsageError):
    """A manual command that does not fit the device's sessions (none active, one already...)."""


class SessionType(StrEnum):
    AUTO = "auto"
    MANUAL = "manual"


class SessionStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class ChangeKind(StrEnum):
    """What happened to a session; ``UPDATED`` also covers an auto session turned manual."""

    STARTED = "started"
    UPDATED = "updated"
    ENDED = "ended"  # status completed
    CANCELLED = "cancelled"


class EndReason(StrEnum):
    COOLED = "cooled"  # every probe back near its idle level
    UNPLUGGED = "unplugged"  # every probe pulled out
    OFFLINE = "offline"  # the device, or the bridge, silent
    TOO_SHORT = "too_short"  # shorter than min_duration: cancelled
    MANUAL = "manual"  # ended or cancelled by a person


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbeSummary:
    """One probe's statistics over a session, in the session's unit."""

    channel: int
    label: str | None
    unit: Unit
    samples: int
    minimum: float | None
    maximum: float | None
    average: float | None  # time-weighted
    weighted_seconds: float  # the time the average covers
    first_time: datetime | None
    last_time: datetime | None
    last_value: float | None


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionSnapshot:
    """A session as the tracker sees it at one moment."""

    serial: str
    session_id: int | None  # the database's id, once the service has stored it
    session_type: SessionType
    status: SessionStatus
    name: str
    auto_named: bool  # the name was generated (and is regenerated at the end)
    start: datetime
    end: datetime | None
    unit: Unit | None  # None until the first temperature reading
    minimum: float | None
    maximum: float | None
    average: float | None  # time-weighted, pooled over every temperature probe
    probes: tuple[ProbeSummary, ...] = ()
    end_reason: EndReason | None = None

    def duration(self, now: datetime | None = None) -> timedelta:
        """Start to end; to ``now`` while active (zero when no time is given)."""
        until = self.end or (ensure_utc(now) if now is not None else self.start)
        return max(until - self.start, timedelta(0))


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionChange:
    """One thing that happened to one device's session."""

    kind: ChangeKind
    session: SessionSnapshot
    at: datetime  # when the tracker decided it

    @property
    def serial(self) -> str:
        return self.session.serial


@dataclass(frozen=True, kw_only=True, slots=True)
class Rules:
    """The detection thresholds (temperatures in ``unit``, durations in seconds)."""

    unit: Unit
    auto_detect: bool
    start_rise: float
    start_min: float
    end_margin: float
    idle_max: float
    idle_time_constant: float
    idle_band: float
    start_hold: float
    start_lookback: float
    end_after: float
    offline_end_after: float
    min_duration: float
    timezone: tzinfo

    @classmethod
    def from_config(cls, config: SessionsConfig) -> Rules:
        import zoneinfo

        return cls(
            unit=Unit(config.temperature_unit),
            auto_detect=config.auto_detect,
            start_rise=config.start_rise,
            start_min=config.start_min,
            end_margin=config.end_margin,
            idle_max=config.idle_max,
            idle_time_constant=config.idle_time_constant,
            idle_band=config.idle_band,
            start_hold=config.start_hold,
            start_lookback=config.start_lookback,
            end_after=config.end_after,
            offline_end_after=config.offline_end_after,
            min_duration=config.min_duration,
            timezone=zoneinfo.ZoneInfo(config.timezone),
        )
