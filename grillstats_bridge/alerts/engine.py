"""The temperature alert engine: rules, readings and a clock in, firings out.

Pure: no I/O library is imported. The service in ``alert_service`` loads the
rules and the arming state from the database, feeds the engine and stores what
it returns; the README's "Temperature alerts" section is the user-facing
description of the rules implemented here.

Everything the engine decides is judged on the readings' own timestamps, never
on the wall clock or on the number of samples, so a replay at any speed and any
sampling interval behaves the same. The injected ``now`` is used for one thing
only: a reading older than ``max_age`` when it arrives may re-arm an alert but
never fires one (the cloud keeps serving an offline device's last value).

Per reading the work is one dictionary lookup plus a constant amount per rule on
that probe; rising / falling windows are bounded deques trimmed as time moves on.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from grillstats_bridge.config import AlertsConfig
from grillstats_bridge.domain import FiringEvent, Reading, Unit, clean_float, convert_temperature
from grillstats_bridge.errors import UsageError

# Comparisons after a unit conversion carry float noise (200 °F is
# 93.33333333333333 °C): a threshold counts as reached within this many degrees.
EPSILON = 1e-6
MAX_CHANNEL = 9  # the cloud's channels are "1".."9"


class AlertRuleError(UsageError):
    """An alert that cannot be evaluated: a missing or contradictory value, a humidity unit."""


class AlertKind(StrEnum):
    """The seed's four alert types (``temperature_alerts.alert_type``)."""

    TARGET = "target"
    RANGE = "range"
    RISING = "rising"
    FALLING = "falling"

    @classmethod
    def parse(cls, text: str) -> AlertKind:
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise AlertRuleError(
                f"unknown alert type {text!r} (expected target, range, rising or falling)"
            ) from None


class Arm(StrEnum):
    """The arming state of an alert, or of one side of a range alert."""

    WAITING = "waiting"  # not armed yet: a range's low side until the probe was inside
    ARMED = "armed"  # fires as soon as its condition holds (and the cooldown allows)
    FIRED = "fired"  # fired; re-arms once the probe is back by the hysteresis margin


def check_rule_values(
    kind: AlertKind,
    unit: Unit,
    *,
    target: float | None = None,
    low: float | None = None,
    high: float | None = None,
    threshold: float | None = None,
) -> None:
    """Raise AlertRuleError naming the problem unless the values make a valid alert of ``kind``."""
    if not unit.is_temperature:
        raise AlertRuleError("alerts are on temperatures: the unit must be F or C, not humidity")
    given = {"target": target, "min": low, "max": high, "threshold": threshold}
    for name, value in given.items():
        if value is not None and not math.isfinite(value):
            raise AlertRuleError(f"{name}: not a finite number")
    if kind is AlertKind.TARGET:
        if target is None:
            raise AlertRuleError("a target alert needs a target temperature")
    elif kind is AlertKind.RANGE:
        if low is None or high is None:
            raise AlertRuleError("a range alert needs both a min and a max temperature")
        if low >= high:
            raise AlertRuleError(f"range: min ({low:g}) must be below max ({high:g})")
    elif threshold is None:
        raise AlertRuleError(f"a {kind} alert needs a threshold (degrees per window)")
    elif threshold <= 0:
        raise AlertRuleError(f"threshold: must be greater than 0, got {threshold:g}")


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertRule:
    """One active alert as the engine sees it; values are in ``unit``."""

    id: int
    serial: str
    channel: int
    kind: AlertKind
    unit: Unit = Unit.FAHRENHEIT
    target: float | None = None  # target
    low: float | None = None  # range
    high: float | None = None  # range
    threshold: float | None = None  # rising / falling: degrees within the rate window
    name: str | None = None
    user_id: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.channel <= MAX_CHANNEL:
            raise AlertRuleError(f"probe: must be 1 to {MAX_CHANNEL}, got {self.channel}")
        check_rule_values(
            self.kind,
            self.unit,
            target=self.target,
            low=self.low,
            high=self.high,
            threshold=self.threshold,
        )

    @property
    def key(self) -> str:
        """What the arming state depends on: a state saved under another key starts afresh."""
        values = "|".join(
            "" if v is None else repr(float(v))
            for v in (self.target, self.low, self.high, self.threshold)
        )
        return f"{self.kind}|{self.unit}|{self.serial}|{self.channel}|{values}"

    @property
    def probe(self) -> tuple[str, int]:
        return (self.serial, self.channel)

    def describe(self) -> str:
        """The condition in a few characters (``≥ 203 °F``, ``225–275 °F``, ``+15 °F``)."""
        symbol = self.unit.symbol
        if self.kind is AlertKind.TARGET:
            return f"≥ {self.target:g} {symbol}"
        if self.kind is AlertKind.RANGE:
            return f"{self.low:g}–{self.high:g} {symbol}"
        sign = "+" if self.kind is AlertKind.RISING else "-"
        return f"{sign}{self.threshold:g} {symbol}"


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """The engine's view of the ``alerts`` section (its defaults are declared there, once):
    durations as timedeltas, a 0 gap or age limit as None (no limit)."""

    config: AlertsConfig = field(default_factory=AlertsConfig)
    rate_window: timedelta = field(init=False)
    rate_coverage: float = field(init=False)
    cooldown: timedelta = field(init=False)
    max_gap: timedelta | None = field(init=False)  # None: gaps never disarm
    max_age: timedelta | None = field(init=False)  # None: old readings may fire

    def __post_init__(self) -> None:
        c = self.config
        if not 0.5 <= c.rate_coverage <= 1.0:
            raise ValueError("rate_coverage: must be between 0.5 and 1")
        if c.rate_window <= 0:
            raise ValueError("rate_window: must be positive")
        values = {
            "rate_window": timedelta(seconds=c.rate_window),
            "rate_coverage": c.rate_coverage,
            "cooldown": timedelta(seconds=c.cooldown),
            "max_gap": timedelta(seconds=c.max_gap) if c.max_gap > 0 else None,
            "max_age": timedelta(seconds=c.max_age) if c.max_age > 0 else None,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def hysteresis(self, unit: Unit) -> float:
        """The margin for an alert set in ``unit``, in that unit."""
        return self.config.hysteresis_c if unit is Unit.CELSIUS else self.config.hysteresis_f


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertState:
    """An alert's arming state: what must survive a restart (and nothing more)."""

    alert_id: int
    rule_key: str
    arm: Arm  # target, rising, falling, and the high side of a range
    low_arm: Arm | None = None  # the low side of a range
    last_fired: datetime | None = None  # reading time of the last firing (for the cooldown)
    changed_at: datetime | None = None  # reading time of the last change of this state
    window_reset_at: datetime | None = None  # rising / falling: probe unplugged, window emptied

    @property
    def active(self) -> bool:
        """Fired and not yet re-armed: a target reached, a range violated, a rate exceeded."""
        return self.arm is Arm.FIRED or self.low_arm is Arm.FIRED


@dataclass(frozen=True, kw_only=True, slots=True)
class Firing:
    """One alert firing: what is stored in the history and published as an event."""

    alert_id: int
    kind: AlertKind
    event: FiringEvent
    serial: str
    channel: int
    time: datetime  # the reading's time: when it happened, not when it was noticed
    value: float  # the probe's temperature, in ``unit``
    unit: Unit  # the alert's unit
    threshold: float  # the target, max, min or threshold that was crossed, in ``unit``
    change: float | None = None  # rising / falling: degrees over the window, in ``unit``
    name: str | None = None
    user_id: int | None = None
    id: int | None = None  # the history (outbox) row, once stored


# Rising / falling history of one probe: (time, value, unit) in arrival order.
_Point = tuple[datetime, float, Unit]


class AlertStep(NamedTuple):
    """A batch's outcome: the firings, in order; the arming states to save; the rules on a
    humidity channel, never evaluated (to report)."""

    firings: list[Firing]
    changes: list[AlertState]
    misapplied: set[int]


class _Live:
    """The engine's mutable view of one rule."""

    __slots__ = ("arm", "changed_at", "last_fired", "low_arm", "margin", "rule", "window_reset_at")

    def __init__(self, rule: AlertRule, settings: AlertSettings, state: AlertState | None) -> None:
        self.rule = rule
        margin = settings.hysteresis(rule.unit)
        if rule.kind is AlertKind.RANGE:
            # A margin wider than half the range would leave no place to re-arm.
            assert rule.low is not None and rule.high is not None
            margin = min(margin, (rule.high - rule.low) / 2)
        elif rule.kind is not AlertKind.TARGET:
            assert rule.threshold is not None
            margin = min(margin, rule.threshold / 2)
        self.margin = margin
        if state is not None and state.rule_key == rule.key:
            self.arm = state.arm
            self.low_arm = state.low_arm
            self.last_fired = state.last_fired
            self.changed_at = state.changed_at
            self.window_reset_at = state.window_reset_at
        else:
            # Fresh: armed at once (so a target already reached fires on the first
            # reading), except a range's low side, which waits for the probe to be inside.
            self.arm = Arm.ARMED
            self.low_arm = Arm.WAITING if rule.kind is AlertKind.RANGE else None
            self.last_fired = None
            self.changed_at = None
            self.window_reset_at = None
        if rule.kind is not AlertKind.RANGE:
            self.low_arm = None
        elif self.low_arm is None:
            self.low_arm = Arm.WAITING

    def export(self) -> AlertState:
        return AlertState(
            alert_id=self.rule.id,
            rule_key=self.rule.key,
            arm=self.arm,
            low_arm=self.low_arm,
            last_fired=self.last_fired,
            changed_at=self.changed_at,
            window_reset_at=self.window_reset_at,
        )


class _Track:
    """Everything known of one probe: its rules, its last reading time, its rate window."""

    __slots__ = ("history", "last_time", "rules", "window_reset_at")

    def __init__(self) -> None:
        self.rules: list[_Live] = []
        self.last_time: datetime | None = None
        self.history: deque[_Point] | None = None
        self.window_reset_at: datetime | None = None  # readings up to here never fill the window


class AlertEngine:
    """Evaluates alert rules against readings; holds the arming state of every rule."""

    def __init__(
        self,
        rules: Iterable[AlertRule] = (),
        settings: AlertSettings | None = None,
        states: Iterable[AlertState] = (),
    ) -> None:
        self.settings = settings or AlertSettings()
        window = self.settings.rate_window
        coverage = self.settings.rate_coverage
        # A rate is measured against the reading closest to one window ago, provided
        # it lies between coverage and (2 - coverage) windows back: 240-360 s for the
        # defaults, so a 5-minute poll with some jitter still measures a 5-minute rate.
        self._window = window
        self._min_span = window * coverage
        self._max_span = window * (2.0 - coverage)
        self._live: dict[int, _Live] = {}
        self._tracks: dict[tuple[str, int], _Track] = {}
        self._changed: dict[int, None] = {}  # an ordered set of alert ids
        self._misapplied: set[int] = set()
        self.set_rules(rules, states)

    # ------------------------------------------------------------------ rules and state

    @property
    def rules(self) -> list[AlertRule]:
        return [live.rule for live in self._live.values()]

    def set_rules(self, rules: Iterable[AlertRule], states: Iterable[AlertState] = ()) -> None:
        """Replace the rules; an unchanged rule keeps its live state, a changed one starts afresh.

        ``states`` (from storage) are used for rules the engine does not hold yet.
        Probes keep their last reading time and rate window across the change.
        """
        saved = {state.alert_id: state for state in states}
        old_live, old_tracks = self._live, self._tracks
        self._live, self._tracks = {}, {}
        for rule in rules:
            if rule.id in self._live:
                raise AlertRuleError(f"alert {rule.id}: given twice")
            previous = old_live.get(rule.id)
            if previous is not None and previous.rule.key == rule.key:
                live = previous
                live.rule = rule  # the name may have changed
            else:
                live = _Live(rule, self.settings, saved.get(rule.id))
            self._live[rule.id] = live
            track = self._tracks.get(rule.probe)
            if track is None:
                track = old_tracks.get(rule.probe) or _Track()
                track.rules = []
                self._tracks[rule.probe] = track
            track.rules.append(live)
        for track in self._tracks.values():
            wants_history = any(
                live.rule.kind in (AlertKind.RISING, AlertKind.FALLING) for live in track.rules
            )
            if not wants_history:
                track.history = None
            elif track.history is None:
                track.history = deque()
            # After a restart, a reading at or before the last change was already judged.
            for live in track.rules:
                track.last_time = _latest(track.last_time, live.changed_at)
                track.window_reset_at = _latest(track.window_reset_at, live.window_reset_at)
        self._changed = {k: None for k in self._changed if k in self._live}
        self._misapplied &= self._live.keys()

    def state(self, alert_id: int) -> AlertState:
        return self._live[alert_id].export()

    def export_state(self) -> list[AlertState]:
        """The arming state of every rule, for storage."""
        return [live.export() for live in self._live.values()]

    def take_changes(self) -> list[AlertState]:
        """The states that changed since the last call (what needs saving)."""
        changed = [self._live[alert_id].export() for alert_id in self._changed]
        self._changed.clear()
        return changed

    def is_active(self, alert_id: int) -> bool:
        live = self._live.get(alert_id)
        return live is not None and (live.arm is Arm.FIRED or live.low_arm is Arm.FIRED)

    def active_probes(self) -> set[tuple[str, int]]:
        """Probes with an alert fired and not yet re-armed (the "alert active" sensor)."""
        return {
            probe
            for probe, track in self._tracks.items()
            if any(live.arm is Arm.FIRED or live.low_arm is Arm.FIRED for live in track.rules)
        }

    def misapplied(self) -> set[int]:
        """Rules whose probe reports humidity: never evaluated (the caller reports them)."""
        return set(self._misapplied)

    def rate_probes(self) -> list[tuple[str, int]]:
        """Probes with a rising / falling rule (whose recent readings ``prime`` wants)."""
        return [probe for probe, track in self._tracks.items() if track.history is not None]

    def window_lookback(self) -> timedelta:
        """How far back ``prime`` needs readings."""
        return self._max_span

    # ------------------------------------------------------------------ readings

    def prime(self, readings: Iterable[Reading]) -> None:
        """Take past readings as already judged: they fill rate windows and never fire.

        Used after a restart with the recent readings from storage, oldest first.
        """
        for reading in readings:
            track = self._tracks.get((reading.serial, reading.channel))
            if track is None:
                continue
            t = reading.time
            if track.last_time is None or t > track.last_time:
                track.last_time = t
            if track.history is not None and (
                track.window_reset_at is None or t > track.window_reset_at
            ):
                self._remember(track.history, reading, t)

    def step(self, readings: Iterable[Reading], now: datetime) -> AlertStep:
        """The one entry per batch: judge the readings, and say what to store and report."""
        firings = self.process(readings, now)
        return AlertStep(firings, self.take_changes(), self.misapplied())

    def process(self, readings: Iterable[Reading], now: datetime) -> list[Firing]:
        """Judge new readings (each probe's in time order); return the firings, in order."""
        firings: list[Firing] = []
        max_gap = self.settings.max_gap
        max_age = self.settings.max_age
        for reading in readings:
            track = self._tracks.get((reading.serial, reading.channel))
            if track is None:
                continue
            t = reading.time
            last = track.last_time
            if last is not None and t <= last:
                continue  # a replay or an older reading: judged already
            track.last_time = t
            value = reading.value
            if value is None or math.isnan(value):
                self._unplugged(track, t)
                continue
            unit = reading.unit
            if not unit.is_temperature:
                self._misapplied.update(live.rule.id for live in track.rules)
                continue
            if max_gap is not None and last is not None and t - last > max_gap:
                self._after_gap(track, t)
            fresh = max_age is None or now - t <= max_age
            reference = self._reference(track.history, t) if track.history is not None else None
            for live in track.rules:
                rule = live.rule
                v = value if unit is rule.unit else convert_temperature(value, unit, rule.unit)
                kind = rule.kind
                if kind is AlertKind.TARGET:
                    firing = self._judge_target(live, v, t, fresh)
                elif kind is AlertKind.RANGE:
                    firing = self._judge_range(live, v, t, fresh)
                elif reference is not None:
                    ref_value = reference[1]
                    if reference[2] is not rule.unit:
                        ref_value = convert_temperature(ref_value, reference[2], rule.unit)
                    firing = self._judge_rate(live, v, v - ref_value, t, fresh)
                else:
                    continue  # the window is not covered yet: no judgement
                if firing is not None:
                    firings.append(firing)
            if track.history is not None:
                self._remember(track.history, reading, t)
        return firings

    # ------------------------------------------------------------------ the rules

    def _judge_target(self, live: _Live, v: float, t: datetime, fresh: bool) -> Firing | None:
        target = live.rule.target
        assert target is not None
        if live.arm is Arm.FIRED:
            if v < target - live.margin:
                self._set(live, t, arm=Arm.ARMED)
            return None
        if v >= target - EPSILON and self._may_fire(live, t, fresh):
            self._set(live, t, arm=Arm.FIRED, fired=True)
            return self._firing(live, FiringEvent.TARGET_REACHED, t, v, target)
        return None

    def _judge_range(self, live: _Live, v: float, t: datetime, fresh: bool) -> Firing | None:
        rule, margin = live.rule, live.margin
        low, high = rule.low, rule.high
        assert low is not None and high is not None
        if live.low_arm is not Arm.ARMED and v >= low + margin:
            self._set(live, t, low_arm=Arm.ARMED)  # inside (or beyond): warmed up
        if live.arm is Arm.FIRED and v <= high - margin:
            self._set(live, t, arm=Arm.ARMED)
        if v > high + EPSILON:
            if live.arm is Arm.ARMED and self._may_fire(live, t, fresh):
                self._set(live, t, arm=Arm.FIRED, fired=True)
                return self._firing(live, FiringEvent.TOO_HIGH, t, v, high)
        elif v < low - EPSILON and live.low_arm is Arm.ARMED and self._may_fire(live, t, fresh):
            self._set(live, t, low_arm=Arm.FIRED, fired=True)
            return self._firing(live, FiringEvent.TOO_LOW, t, v, low)
        return None

    def _judge_rate(
        self, live: _Live, v: float, change: float, t: datetime, fresh: bool
    ) -> Firing | None:
        rule = live.rule
        threshold = rule.threshold
        assert threshold is not None
        rising = rule.kind is AlertKind.RISING
        moved = change if rising else -change
        if live.arm is Arm.FIRED:
            if moved < threshold - live.margin:
                self._set(live, t, arm=Arm.ARMED)
            return None
        if moved >= threshold - EPSILON and self._may_fire(live, t, fresh):
            self._set(live, t, arm=Arm.FIRED, fired=True)
            event = FiringEvent.RISING if rising else FiringEvent.FALLING
            return self._firing(live, event, t, v, threshold, change=moved)
        return None

    def _unplugged(self, track: _Track, t: datetime) -> None:
        # A probe plugged back in reads the room: neither "too low" nor a fall.
        for live in track.rules:
            if live.low_arm is not None and live.low_arm is not Arm.WAITING:
                self._set(live, t, low_arm=Arm.WAITING)
        if track.history is not None:
            track.history.clear()
            track.window_reset_at = t
            for live in track.rules:
                if live.rule.kind in (AlertKind.RISING, AlertKind.FALLING):
                    live.window_reset_at = t  # saved, so that a restart does not refill it
                    live.changed_at = t
                    self._changed[live.rule.id] = None

    def _after_gap(self, track: _Track, t: datetime) -> None:
        # After a long silence (device off, out of range) the first value may be a
        # cold restart: a range's low side waits to see the probe inside again.
        for live in track.rules:
            if live.low_arm is Arm.ARMED or live.low_arm is Arm.FIRED:
                self._set(live, t, low_arm=Arm.WAITING)

    # ------------------------------------------------------------------ helpers

    def _may_fire(self, live: _Live, t: datetime, fresh: bool) -> bool:
        # A blocked firing leaves the alert armed: it fires on the first reading
        # after the cooldown at which the condition still holds.
        if not fresh:
            return False
        last = live.last_fired
        return last is None or t - last >= self.settings.cooldown

    def _set(
        self,
        live: _Live,
        t: datetime,
        *,
        arm: Arm | None = None,
        low_arm: Arm | None = None,
        fired: bool = False,
    ) -> None:
        if arm is not None:
            live.arm = arm
        if low_arm is not None:
            live.low_arm = low_arm
        if fired:
            live.last_fired = t
        live.changed_at = t
        self._changed[live.rule.id] = None

    def _firing(
        self,
        live: _Live,
        event: FiringEvent,
        t: datetime,
        v: float,
        threshold: float,
        *,
        change: float | None = None,
    ) -> Firing:
        rule = live.rule
        return Firing(
            alert_id=rule.id,
            kind=rule.kind,
            event=event,
            serial=rule.serial,
            channel=rule.channel,
            time=t,
            value=clean_float(v),
            unit=rule.unit,
            threshold=threshold,
            change=None if change is None else clean_float(change),
            name=rule.name,
            user_id=rule.user_id,
        )

    def _reference(self, history: deque[_Point], t: datetime) -> _Point | None:
        """The past reading to measure a rate against: the eligible one closest to a window ago."""
        target = t - self._window
        # Points are in time order and t only grows: once a later point is also at
        # or before the target, the earlier one can never be the closest again.
        while len(history) >= 2 and history[1][0] <= target:
            history.popleft()
        best: _Point | None = None
        best_distance = timedelta.max
        for point in (history[0], history[1]) if len(history) >= 2 else history:
            span = t - point[0]
            if self._min_span <= span <= self._max_span:
                distance = abs(span - self._window)
                if distance < best_distance:
                    best, best_distance = point, distance
        return best

    def _remember(self, history: deque[_Point], reading: Reading, t: datetime) -> None:
        value = reading.value
        if value is None or math.isnan(value) or not reading.unit.is_temperature:
            return
        if history and t <= history[-1][0]:
            return
        history.append((t, value, reading.unit))
        target = t - self._window
        while len(history) >= 2 and history[1][0] <= target:
            history.popleft()


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    return a if b is None or a >= b else b
