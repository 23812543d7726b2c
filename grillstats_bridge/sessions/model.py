"""The values of the sessions feature: types, snapshots, changes and the rules (pure)."""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum
from typing import NamedTuple

from grillstats_bridge.config import SessionsConfig
from grillstats_bridge.domain import Poll, Reading, Unit
from grillstats_bridge.errors import UsageError

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
        until = self.end or (now if now is not None else self.start)
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


@dataclass(frozen=True, slots=True)
class Rules:
    """The tracker's view of the ``sessions`` section: every threshold is read from the
    section itself (temperatures in ``unit``, durations in seconds; declared once, in
    the configuration), with its unit and time zone resolved once."""

    config: SessionsConfig
    unit: Unit = field(init=False)
    timezone: tzinfo = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "unit", Unit(self.config.temperature_unit))
        object.__setattr__(self, "timezone", zoneinfo.ZoneInfo(self.config.timezone))

    @classmethod
    def from_config(cls, config: SessionsConfig) -> Rules:
        return cls(config)


# --------------------------------------------------------------------------- one batch in


class StoredSession(NamedTuple):
    """A session the database says is active (what reconciling the tracker needs of it)."""

    session_id: int
    session_type: SessionType
    auto_named: bool
    name: str | None


class ManualStart(NamedTuple):
    serial: str
    name: str | None = None


class ManualEnd(NamedTuple):
    serial: str
    session_id: int
    cancel: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Batch:
    """One entry into the tracker: what the database says, then what happened, at ``now``.

    ``serials`` are the devices whose stored sessions are given: ``stored`` holds
    the active one of each that has one, ``snapshots`` the full rows (and the last
    time each was known to run) of those the tracker must take over or report as
    ended elsewhere. Then, in this order: a manual command, the polls (each at
    ``poll_time``, or its own time when None), plain readings, and time passing
    (``tick``). Times are aware UTC (made so where they enter the bridge).
    """

    now: datetime
    serials: Sequence[str] = ()
    stored: Mapping[str, StoredSession] = field(default_factory=dict)
    snapshots: Mapping[int, tuple[SessionSnapshot, datetime]] = field(default_factory=dict)
    start: ManualStart | None = None
    end: ManualEnd | None = None
    polls: Sequence[Poll] = ()
    poll_time: datetime | None = None
    readings: Sequence[Reading] = ()
    tick: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    """The tracker's answer to a batch: what the database already said (``known``: sessions
    ended or started elsewhere, taken over), and the changes to store (``changes``)."""

    known: list[SessionChange]
    changes: list[SessionChange]
