"""Synthetic cooks shaped like real ones, and harnesses that poll them, and the simulator's
shipped scenarios, as the bridge does.

A curve gives each channel's value (``None``: unplugged) at a time in seconds.
The simulated device pushes every ``push_interval`` seconds (or, like an RFX
probe, only when a value moved by ``push_delta``, with a heartbeat); the cloud
keeps only the latest push; the bridge polls every ``poll_interval`` seconds
and sees the latest push once, exactly like the real pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from grillstats_bridge.domain import Device, Poll, Reading, Unit, convert_temperature
from grillstats_bridge.sessions.model import ChangeKind, SessionChange, SessionSnapshot
from grillstats_bridge.sessions.tracker import SessionTracker
from grillstats_bridge.simulator.scenario import Scenario

T0 = datetime(2026, 7, 11, 14, 0, tzinfo=UTC)
MIN = 60.0
H = 3600.0

Values = dict[int, float | None]


def approach(t: float, since: float, start: float, target: float, tau: float) -> float:
    """Exponential approach from ``start`` (at ``since``) to ``target``."""
    return target + (start - target) * math.exp(-max(t - since, 0.0) / tau)


def wobble(t: float, amplitude: float) -> float:
    """Deterministic sensor noise (the same at any poll interval)."""
    return amplitude * (math.sin(t / 37.0) + 0.5 * math.sin(t / 11.3 + 1.0)) / 1.5


def lid_dip(t: float, at: float, depth: float, open_for: float, recover_tau: float) -> float:
    """How far an opened lid pulls the pit down: a fall while open, then a recovery."""
    if t < at:
        return 0.0
    if t < at + open_for:
        return depth * (t - at) / open_for
    return depth * math.exp(-(t - at - open_for) / recover_tau)


@dataclass(frozen=True)
class Curve:
    name: str
    duration: float
    channels: Callable[[float], Values]
    unit: Unit = Unit.FAHRENHEIT
    extra_units: tuple[tuple[int, Unit], ...] = ()  # channels not in ``unit`` (humidity...)
    push_interval: float = 15.0
    push_delta: float | None = None  # push only on a change this big (RFX), else every push
    heartbeat: float = 60.0
    offline: tuple[tuple[float, float], ...] = ()  # the device says nothing in these windows

    def unit_of(self, channel: int) -> Unit:
        return dict(self.extra_units).get(channel, self.unit)


# --------------------------------------------------------------------------- cooks

BRISKET_FIRE = 10 * MIN
BRISKET_DONE = 13 * H
BRISKET_PULLED = 13.5 * H
BRISKET_WRAP = 7 * H


def brisket(t: float) -> Values:
    """A packer brisket: a smoker fired at 0:10, spritzes at 3 h and 5 h, a wrap at 7 h
    (lid open 12 min, pit to 90 °F, meat probe out), a stall from 4 h to 8 h, done at 13 h,
    the pit left to cool and the meat probe pulled at 13:30."""
    if t < BRISKET_FIRE:
        pit = 65.0 + wobble(t, 0.5)
    elif t < BRISKET_DONE:
        pit = approach(t, BRISKET_FIRE, 65.0, 250.0, 8 * MIN) + wobble(t, 4.0)
        pit -= lid_dip(t, 3 * H, 90.0, 3 * MIN, 5 * MIN)
        pit -= lid_dip(t, 5 * H, 90.0, 3 * MIN, 5 * MIN)
        pit -= lid_dip(t, BRISKET_WRAP, 160.0, 12 * MIN, 6 * MIN)
    else:
        done = approach(BRISKET_DONE, BRISKET_FIRE, 65.0, 250.0, 8 * MIN)
        pit = approach(t, BRISKET_DONE, done, 65.0, 40 * MIN)
    meat: float | None
    if t < 4 * H:
        meat = approach(t, 0.0, 38.0, 250.0, 5.32 * H)
    elif t < 8 * H:
        meat = 150.0 + 15.0 * (t - 4 * H) / (4 * H)  # the stall
    elif t < 12.5 * H:
        meat = 165.0 + 38.0 * (t - 8 * H) / (4.5 * H)
    elif t < BRISKET_DONE:
        meat = 203.0
    else:
        meat = 203.0 - 13.0 * (t - BRISKET_DONE) / (0.5 * H)  # resting, wrapped
    if BRISKET_WRAP <= t < BRISKET_WRAP + 12 * MIN or t >= BRISKET_PULLED:
        meat = None
    return {1: pit, 2: meat + wobble(t, 0.3) if meat is not None else None, 3: None}


HOT_FIRE = 30 * MIN
HOT_DONE = 2 * H


def hot_and_fast(t: float) -> Values:
    """Spatchcocked chicken on a kettle: lit at 0:30, 350 °F, a lid-open at 1:15, closed
    down at 2:00; the meat probe goes in at 0:25 and comes out at 2:05."""
    if t < HOT_FIRE:
        pit = 75.0 + wobble(t, 0.5)
    elif t < HOT_DONE:
        pit = approach(t, HOT_FIRE, 75.0, 350.0, 6 * MIN) + wobble(t, 6.0)
        pit -= lid_dip(t, 75 * MIN, 150.0, 2 * MIN, 3 * MIN)
    else:
        pit = approach(t, HOT_DONE, 350.0, 75.0, 15 * MIN)
    meat: float | None = None
    if 25 * MIN <= t < 2 * H + 5 * MIN:
        meat = approach(t, 25 * MIN, 40.0, 190.0, 50 * MIN)
    return {1: pit, 2: meat, 3: None}


def _daily(t: float, at: float, length: float) -> bool:
    return at <= t % (24 * H) < at + length


def kitchen_logger(t: float) -> Values:
    """A Node on a kitchen shelf for two days: 67-75 °F, dinner on the stove every evening
    (+15 °F), oven-door puffs of 110 °F; and its humidity channel."""
    temp = 71.0 + 4.0 * math.sin(2 * math.pi * t / (24 * H)) + wobble(t, 0.3)
    if _daily(t, 4 * H, 45 * MIN):
        temp += 15.0
    if _daily(t, 4 * H + 20 * MIN, 90.0) or _daily(t, 4 * H + 35 * MIN, 60.0):
        temp = 110.0
    humidity = 45.0 + 10.0 * math.sin(t / 5000.0) + (40.0 if _daily(t, 4 * H, 30 * MIN) else 0.0)
    return {1: temp, 2: humidity}


def fridge_logger(t: float) -> Values:
    """Fridge and freezer for two days: door openings to 50 °F, defrost cycles to 45 °F."""
    fridge = 37.0 + wobble(t, 1.0)
    if t % (3 * H) < 3 * MIN:
        fridge = 50.0
    elif t % (8 * H) < 20 * MIN:
        fridge = 45.0
    freezer = 0.0 + wobble(t, 2.0) + (15.0 if t % (8 * H) < 20 * MIN else 0.0)
    return {1: fridge, 2: freezer}


SMOKE_FIRE = 20 * MIN
SMOKE_DONE = 8 * H


def steady_smoke(t: float) -> Values:
    """Pork shoulder on a pellet smoker holding exactly 225 °F for hours (an RFX gateway
    that pushes only on change says nothing for long stretches)."""
    if t < SMOKE_FIRE:
        pit = 60.0
    elif t < SMOKE_DONE:
        pit = round(approach(t, SMOKE_FIRE, 60.0, 225.0, 5 * MIN))
    else:
        pit = round(approach(t, SMOKE_DONE, 225.0, 60.0, 30 * MIN))
    return {1: float(pit)}


def boiling_water_test(t: float) -> Values:
    """Checking a probe's calibration in boiling water for 8 minutes."""
    return {1: 212.0 if 30 * MIN <= t < 38 * MIN else 70.0 + wobble(t, 0.5)}


def in_celsius(curve: Callable[[float], Values]) -> Callable[[float], Values]:
    def converted(t: float) -> Values:
        return {
            ch: None if v is None else convert_temperature(v, Unit.FAHRENHEIT, Unit.CELSIUS)
            for ch, v in curve(t).items()
        }

    return converted


CURVES = {
    "brisket": Curve("brisket", 16 * H, brisket),
    "hot_and_fast": Curve("hot_and_fast", 4 * H, hot_and_fast),
    "kitchen_logger": Curve(
        "kitchen_logger",
        48 * H,
        kitchen_logger,
        extra_units=((2, Unit.HUMIDITY),),
        push_interval=60.0,
    ),
    "fridge_logger": Curve("fridge_logger", 48 * H, fridge_logger, push_interval=60.0),
    "steady_smoke": Curve("steady_smoke", 11 * H, steady_smoke, push_delta=2.0, push_interval=5),
}


def first_time(
    curve: Callable[[float], Values], test: Callable[[Values], bool], since: float = 0.0
) -> float:
    """The first second at or after ``since`` where ``test`` holds (for expected times)."""
    t = since
    while not test(curve(t)):
        t += 1.0
    return t


def left_rest(curve: Callable[[float], Values], band: float) -> Callable[[Values], bool]:
    """True once a channel is ``band`` above where it first read (its idle level)."""
    base: dict[int, float] = {}
    t = 0.0
    while t < 48 * H:
        for ch, v in curve(t).items():
            if v is not None and ch not in base:
                base[ch] = v
        t += 60.0
    return lambda values: any(
        v is not None and ch in base and v >= base[ch] + band for ch, v in values.items()
    )


def any_at_least(threshold: float) -> Callable[[Values], bool]:
    return lambda values: any(v is not None and v >= threshold for v in values.values())


def all_below(threshold: float) -> Callable[[Values], bool]:
    return lambda values: all(v is None or v < threshold for v in values.values())


# --------------------------------------------------------------------------- the harness


@dataclass
class Run:
    changes: list[SessionChange]

    @property
    def finished(self) -> list[SessionSnapshot]:
        return [
            c.session for c in self.changes if c.kind in (ChangeKind.ENDED, ChangeKind.CANCELLED)
        ]

    @property
    def started(self) -> list[SessionSnapshot]:
        return [c.session for c in self.changes if c.kind is ChangeKind.STARTED]


class Simulation:
    """One device following a curve, polled by the bridge at ``poll_interval``."""

    def __init__(
        self, curve: Curve, poll_interval: float, serial: str = "SIG-1", origin: float = 0.0
    ) -> None:
        self.origin = T0 + timedelta(seconds=origin)  # the curve's time 0
        self.curve = curve
        self.poll_interval = poll_interval
        self.serial = serial
        self.device_time = 0.0  # the device's next push slot
        self.pushed: Values = {}
        self.last_push: float | None = None
        self.last_seen: float | None = None
        self.seen_push: float | None = None  # what the bridge has already read
        self.poll_time = 0.0
        self.bridge_down: tuple[float, float] | None = None

    def _device_until(self, until: float) -> None:
        curve = self.curve
        while self.device_time <= until:
            d = self.device_time
            self.device_time += curve.push_interval
            if any(a <= d < b for a, b in curve.offline):
                continue
            values = curve.channels(d)
            if curve.push_delta is None or self.last_push is None or self._moved(values):
                self.pushed, self.last_push, self.last_seen = values, d, d
            elif self.last_seen is None or d - self.last_seen >= curve.heartbeat:
                self.last_seen = d  # a heartbeat: lastSeen moves, lastTelemetrySaved does not

    def _moved(self, values: Values) -> bool:
        delta = self.curve.push_delta or 0.0
        for ch, v in values.items():
            old = self.pushed.get(ch)
            if (v is None) != (old is None) or (
                v is not None and old is not None and abs(v - old) >= delta
            ):
                return True
        return False

    def poll(self) -> Poll:
        """The next poll the bridge makes."""
        p = self.poll_time
        self.poll_time += self.poll_interval
        self._device_until(p)
        readings: list[Reading] = []
        if self.last_push is not None and self.last_push != self.seen_push:
            self.seen_push = self.last_push
            readings = [
                Reading(
                    serial=self.serial,
                    channel=ch,
                    time=self.origin + timedelta(seconds=self.last_push),
                    value=v,
                    unit=self.curve.unit_of(ch),
                )
                for ch, v in self.pushed.items()
            ]
        seen = (
            self.origin + timedelta(seconds=self.last_seen) if self.last_seen is not None else None
        )
        device = Device(
            serial=self.serial,
            last_seen=seen,
            last_telemetry_saved=self.origin + timedelta(seconds=self.last_push)
            if self.last_push is not None
            else None,
            transmit_interval_s=int(self.curve.push_interval),
            heartbeat_interval_s=int(self.curve.heartbeat),
        )
        return Poll(
            user_id=1,
            polled_at=self.origin + timedelta(seconds=p),
            devices=(device,),
            readings=tuple(readings),
        )

    def run(
        self, tracker: SessionTracker, until: float | None = None, *, skip: float = 0.0
    ) -> list[SessionChange]:
        """Poll until ``until`` (the curve's end by default); polls before ``skip`` are lost."""
        end = self.curve.duration if until is None else until
        changes: list[SessionChange] = []
        while self.poll_time <= end:
            poll = self.poll()
            if poll.polled_at < self.origin + timedelta(seconds=skip):
                continue
            changes += tracker.observe_poll(poll)
        return changes


def run_curve(tracker: SessionTracker, curve: Curve, poll_interval: float) -> Run:
    return Run(Simulation(curve, poll_interval).run(tracker))


def seconds(when: datetime | None) -> float:
    """Seconds since T0 of a session time that must be set."""
    assert when is not None
    return (when - T0).total_seconds()


# --------------------------------------------------------------------------- shipped scenarios


def scenario_polls(scenario: Scenario, every: float) -> Iterator[Poll]:
    """What the daemon's poller gets from the simulator for each account every ``every`` s:
    every device (its lastSeen at its last push) and the readings of new pushes only."""
    seen: dict[str, float] = {}
    t = 0.0
    while t <= scenario.duration + 1e-9:
        for account in scenario.accounts:
            devices: list[Device] = []
            readings: list[Reading] = []
            for spec in scenario.devices_of(account.email):
                push = scenario.last_push(spec.serial, t)
                pushed_at = scenario.time(push)
                if seen.get(spec.serial) != push:
                    seen[spec.serial] = push
                    for channel in spec.channels:
                        sample = scenario.sample(spec.serial, channel.number, t)
                        readings.append(
                            Reading(
                                serial=spec.serial,
                                channel=channel.number,
                                time=sample.time,
                                value=sample.value,
                                unit=sample.unit,
                            )
                        )
                devices.append(
                    Device(
                        serial=spec.serial,
                        label=spec.label,
                        last_seen=pushed_at,
                        last_telemetry_saved=pushed_at,
                        transmit_interval_s=int(spec.transmit_interval),
                        heartbeat_interval_s=int(spec.heartbeat_interval),
                    )
                )
            yield Poll(
                user_id=1,
                polled_at=scenario.time(t),
                devices=tuple(devices),
                readings=tuple(readings),
            )
        t += every
