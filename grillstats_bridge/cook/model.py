"""The values of the cook feature: states, estimates, events and the rules (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from grillstats_bridge.config import CookConfig
from grillstats_bridge.domain import Measurement, Reading, Unit

Sample = tuple[float, float]  # (POSIX seconds, degrees in the rules' unit)
ProbeKey = tuple[str, int]  # (serial, channel)


class CookState(StrEnum):
    """Where a probe with a target is in its cook, least advanced first."""

    IDLE = "idle"
    PREHEATING = "preheating"
    COOKING = "cooking"
    STALLED = "stalled"
    ALMOST_READY = "almost_ready"
    READY = "ready"
    RESTING = "resting"

    @property
    def rank(self) -> int:
        return list(CookState).index(self)


COOK_STATES = tuple(s.value for s in CookState)


class Method(StrEnum):
    """How an estimate was made."""

    NEWTON = "newton"  # Newton's law of heating toward the pit
    LINEAR = "linear"  # the recent rate, extrapolated
    STALL = "stall"  # through a stall: its expected length, then the rate before it
    DONE = "done"  # the target is reached
    NONE = "none"  # not enough to go on


class CookMethod(StrEnum):
    """How the person says they cook a probe's meat (``auto``: nothing said)."""

    AUTO = "auto"
    REVERSE_SEAR = "reverse_sear"  # slow at a low pit, then seared near the target


COOK_METHODS = tuple(m.value for m in CookMethod)


class CookEventKind(StrEnum):
    STALL_STARTED = "stall_started"
    STALL_ENDED = "stall_ended"
    READY = "ready"


@dataclass(frozen=True, kw_only=True, slots=True)
class Rules:
    """The cook settings, in one unit, as plain numbers (seconds and degrees)."""

    unit: Unit = Unit.FAHRENHEIT
    window: float = 2700.0
    min_span: float = 600.0
    stall_rise: float = 2.0
    stall_time: float = 1800.0
    stall_low: float = 140.0
    stall_high: float = 180.0
    stall_expected: float = 10800.0
    stall_pit_max: float = 300.0
    almost_ready: float = 5.0
    rest_drop: float = 2.0
    cold_rise: float = 10.0
    preheat_rate: float = 30.0  # degrees per hour
    sear_below: float = 15.0  # a declared reverse sear: seared this far below the target...
    sear_time: float = 480.0  # ...and done this many seconds later

    @classmethod
    def from_config(cls, config: CookConfig) -> Rules:
        return cls(
            unit=Unit(config.temperature_unit),
            window=config.window,
            min_span=config.min_span,
            stall_rise=config.stall_rise,
            stall_time=config.stall_time,
            stall_low=config.stall_low,
            stall_high=config.stall_high,
            stall_expected=config.stall_expected,
            stall_pit_max=config.stall_pit_max,
            almost_ready=config.almost_ready,
            rest_drop=config.rest_drop,
            cold_rise=config.cold_rise,
            preheat_rate=config.preheat_rate,
            sear_below=config.sear_below,
            sear_time=config.sear_time,
        )

    @property
    def unit_degree(self) -> float:
        """One °F in the rules' unit (a temperature difference)."""
        return 1.0 if self.unit is Unit.FAHRENHEIT else 1.0 / 1.8

    @property
    def history(self) -> float:
        """How far back a probe's readings are kept: a stall and the climb before it."""
        return self.window + self.stall_time + 300.0


POST_STALL_PACE = 0.7  # by default, after a stall meat climbs at this share of its old rate


@dataclass(frozen=True, slots=True)
class Calibration:
    """What the predictor takes from a person's past cooks (``cook.calibration``); the
    defaults when there are none."""

    past_cooks: int = 0
    stall_seconds: float | None = None  # the usual stall length (None: the configured one)
    climb_pace: float = POST_STALL_PACE  # the rate after a stall / the rate before it
    pace: float = 1.0  # the plain climb's predicted time left is multiplied by this
    # the person sears (raises the pit near the end): at this meat temperature, then done
    # this many seconds later; None: they do not (or most of their cooks did not)
    sear_at: float | None = None
    sear_seconds: float | None = None


NO_CALIBRATION = Calibration()


@dataclass(frozen=True, kw_only=True, slots=True)
class Estimate:
    """One probe's prediction after a batch (times aware UTC; temperatures in ``unit``)."""

    serial: str
    channel: int
    at: datetime
    target: float
    unit: Unit
    state: CookState
    value: float | None
    progress: float | None  # percent, from the cook's first reading to the target
    method: Method
    done_at: datetime | None
    low: datetime | None  # the earliest likely done time
    high: datetime | None  # the latest likely done time
    rate: float | None  # degrees per hour now
    stalled: bool
    stall_started: datetime | None = None
    past_cooks: int = 0  # how many of the person's past cooks calibrated it

    @property
    def key(self) -> ProbeKey:
        return (self.serial, self.channel)

    @property
    def minutes_left(self) -> float | None:
        if self.done_at is None:
            return None
        return max((self.done_at - self.at).total_seconds() / 60.0, 0.0)


@dataclass(frozen=True, kw_only=True, slots=True)
class CookEvent:
    """A stall started or ended, or a probe reached its target."""

    kind: CookEventKind
    serial: str
    channel: int
    at: datetime
    value: float
    unit: Unit
    stall_start: datetime | None = None
    stall_seconds: float | None = None
    # READY only, what the cook teaches the next ones (cook.calibration.PastCook):
    target: float | None = None
    pace: float | None = None  # actual / predicted time left of the plain climb
    climb_pace: float | None = None  # the rate after the stall / the rate before it
    sear_at: float | None = None  # the meat's temperature when the pit stepped up late...
    sear_seconds: float | None = None  # ...and how long from then to the target


@dataclass(frozen=True, kw_only=True, slots=True)
class CookBatch:
    """What one pass of the tracker takes: readings, every probe's target, the pits."""

    now: datetime
    readings: Sequence[Reading] = ()
    targets: Mapping[ProbeKey, Measurement] = field(default_factory=dict)
    # serial -> its pit channel, or another device's probe (an RFX Meat probe's gateway)
    pits: Mapping[str, int | ProbeKey] = field(default_factory=dict)
    calibrations: Mapping[ProbeKey, Calibration] = field(default_factory=dict)
    replay: bool = False  # rebuilding from stored readings: no events


@dataclass(frozen=True, kw_only=True, slots=True)
class CookStep:
    """What one pass produced: estimates of the probes it touched, events, device states."""

    estimates: tuple[Estimate, ...] = ()
    events: tuple[CookEvent, ...] = ()
    dropped: tuple[ProbeKey, ...] = ()  # probes whose target went away
    devices: Mapping[str, CookState] = field(default_factory=dict)
