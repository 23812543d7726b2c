"""What the tracker remembers per device and probe between polls (pure)."""

from __future__ import annotations

from enum import StrEnum

from grillstats_bridge.domain import (
    Unit,
)
from grillstats_bridge.sessions.model import (
    EndReason,
    SessionType,
)
from grillstats_bridge.sessions.stats import _Stats


class _Mode(StrEnum):
    IDLE = "idle"
    PENDING = "pending"  # hot, not yet for start_hold
    ACTIVE = "active"  # an automatic session
    MANUAL = "manual"  # a manual session: detection suspended


class _Probe:
    """What the tracker knows of one temperature channel."""

    __slots__ = ("hot", "idle", "label", "raised", "raw", "time", "unit", "value", "warm")

    def __init__(self) -> None:
        self.value: float | None = None  # in the rules' unit; None: unplugged or never seen
        self.raw: float | None = None  # as reported
        self.unit = Unit.FAHRENHEIT
        self.time: float | None = None
        self.idle: float | None = None
        self.hot = False
        self.warm = False
        self.raised = False  # above its idle band: the device is not at rest
        self.label: str | None = None


class _Session:
    __slots__ = (
        "auto_named",
        "cool_since",
        "cool_stats",
        "dirty",
        "name",
        "quiet_reason",
        "quiet_since",
        "session_id",
        "start",
        "stats",
        "type",
    )

    def __init__(self, type: SessionType, start: float, name: str, stats: _Stats) -> None:
        self.session_id: int | None = None
        self.type = type
        self.start = start
        self.name = name
        self.auto_named = True
        self.stats = stats
        self.cool_since: float | None = None  # stopped being hot: the end, if it stays so
        self.cool_stats: _Stats | None = None  # the statistics at cool_since
        self.quiet_since: float | None = None  # neither hot nor warm: the end timer
        self.quiet_reason = EndReason.COOLED
        self.dirty = False


class _Device:
    __slots__ = (
        "armed",
        "mode",
        "n_hot",
        "n_raised",
        "n_warm",
        "online",
        "onset",
        "preroll",
        "preroll_low",
        "preroll_since",
        "probes",
        "rearm_since",
        "serial",
        "session",
        "updated",
    )

    def __init__(self, serial: str) -> None:
        self.serial = serial
        self.probes: dict[int, _Probe] = {}
        self.n_hot = 0
        self.n_warm = 0
        self.n_raised = 0
        self.online = True
        self.mode = _Mode.IDLE
        self.armed = True  # False after a hand-ended session, until the device cools
        self.rearm_since: float | None = None  # quiet since, while not armed
        self.updated: float | None = None  # the latest time the tracker has seen it at
        self.onset: float | None = None  # the first hot reading, while pending
        # Statistics since the device left its idle level, kept while idle (armed) and
        # pending: a confirmed cook is dated from preroll_since and starts with them.
        self.preroll: _Stats | None = None
        self.preroll_since: float | None = None
        self.preroll_low = 0.0  # the lowest rise above idle since then
        self.session: _Session | None = None

    @property
    def hot(self) -> bool:
        return self.online and self.n_hot > 0

    @property
    def warm(self) -> bool:
        return self.online and self.n_warm > 0

    def labels(self) -> dict[int, str | None]:
        return {ch: p.label for ch, p in self.probes.items()}

    def collector(self) -> _Stats | None:
        if self.session is not None:
            return self.session.stats
        return self.preroll

    def drop_preroll(self) -> None:
        self.preroll = self.preroll_since = None

    def rise(self) -> float:
        """How far the most raised plugged probe is above its idle level."""
        return max(
            (
                p.value - p.idle
                for p in self.probes.values()
                if p.value is not None and p.idle is not None
            ),
            default=0.0,
        )
