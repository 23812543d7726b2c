"""Typed values shared by every part of the bridge: devices, probes, readings, units.

Pure: no I/O library is imported here. The cloud client produces these values,
the database layer stores them, the alert engine and the session tracker consume
them and the publisher turns them into MQTT payloads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the only clock the code reads directly)."""
    return datetime.now(UTC)


def ensure_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime; naive values are taken to be UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class Unit(StrEnum):
    """A channel's unit as the cloud names it."""

    FAHRENHEIT = "F"
    CELSIUS = "C"
    HUMIDITY = "H"  # relative humidity in percent: not a temperature

    @property
    def is_temperature(self) -> bool:
        return self is not Unit.HUMIDITY

    @property
    def symbol(self) -> str:
        """The unit string Home Assistant and people expect."""
        return {"F": "°F", "C": "°C", "H": "%"}[self.value]

    @classmethod
    def parse(cls, text: str) -> Unit:
        """Accept ``F``, ``°F``, ``fahrenheit`` (any case) and the like; ValueError otherwise."""
        key = text.strip().lstrip("°").upper()
        aliases = {
            "F": cls.FAHRENHEIT,
            "FAHRENHEIT": cls.FAHRENHEIT,
            "C": cls.CELSIUS,
            "CELSIUS": cls.CELSIUS,
            "H": cls.HUMIDITY,
            "%": cls.HUMIDITY,
            "RH": cls.HUMIDITY,
        }
        try:
            return aliases[key]
        except KeyError:
            raise ValueError(f"unknown unit {text!r} (expected F, C or H)") from None


def convert_temperature(value: float, from_unit: Unit, to_unit: Unit) -> float:
    """Convert an absolute temperature between °F and °C."""
    _require_temperature(from_unit, to_unit)
    if from_unit is to_unit:
        return value
    if from_unit is Unit.FAHRENHEIT:
        return (value - 32.0) * 5.0 / 9.0
    return value * 9.0 / 5.0 + 32.0


def _require_temperature(*units: Unit) -> None:
    for unit in units:
        if not unit.is_temperature:
            raise ValueError("humidity is not a temperature and cannot be converted")


def clean_float(value: float, digits: int = 2) -> float:
    """Strip float32 noise (``225.10000610351562`` -> ``225.1``)."""
    return round(value, digits)


@dataclass(frozen=True, slots=True)
class Measurement:
    """A value with its unit: temperatures never travel without one."""

    value: float
    unit: Unit

    def to(self, unit: Unit) -> Measurement:
        if unit is self.unit:
            return self
        return Measurement(convert_temperature(self.value, self.unit, unit), unit)

    def __str__(self) -> str:
        return f"{self.value:g} {self.unit.symbol}"


@dataclass(frozen=True, kw_only=True, slots=True)
class AlarmSetting:
    """One of a channel's cloud alarms (``alarmHigh`` / ``alarmLow``)."""

    enabled: bool = False
    alarming: bool = False
    value: float | None = None
    unit: Unit | None = None


class FanState(StrEnum):
    """Billows fan state on an RFX gateway (cloud ``fan.state`` 0/1/2)."""

    PAUSED = "paused"
    BLOWING = "blowing"
    PULSING = "pulsing"

    @classmethod
    def from_code(cls, code: int | None) -> FanState | None:
        return (
            {0: cls.PAUSED, 1: cls.BLOWING, 2: cls.PULSING}.get(code) if code is not None else None
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Fan:
    """The Billows fan attached to an RFX gateway."""

    connected: bool | None = None
    set_temperature: float | None = None
    channel: int | None = None
    state: FanState | None = None


NO_PROBE_STATUS = "NO PROBE"


@dataclass(frozen=True, kw_only=True, slots=True)
class Probe:
    """One channel of a device as last reported by the cloud."""

    serial: str
    channel: int
    label: str | None = None
    value: float | None = None  # None: no probe plugged in (unknown, never 0)
    unit: Unit = Unit.FAHRENHEIT
    status: str | None = None  # NORMAL, LOW, HIGH, NO PROBE
    alarm_high: AlarmSetting | None = None
    alarm_low: AlarmSetting | None = None
    last_seen: datetime | None = None
    last_telemetry_saved: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # every decoded field, unknown ones too

    @property
    def connected(self) -> bool:
        return self.value is not None and self.status != NO_PROBE_STATUS

    @property
    def measurement(self) -> Measurement | None:
        return (
            Measurement(self.value, self.unit)
            if self.connected and self.value is not None
            else None
        )


# Below this many seconds of silence a device is never judged offline, whatever
# its own interval says: the cloud's timestamps jitter by tens of seconds.
MIN_OFFLINE_AFTER_S = 300.0
# A device is offline after missing this many of its own reporting intervals.
MISSED_INTERVALS_OFFLINE = 3


@dataclass(frozen=True, kw_only=True, slots=True)
class Device:
    """A ThermoWorks device (Signals, gateway, RFX probe, Node...) and its channels."""

    serial: str
    label: str | None = None
    type: str | None = None  # signals, rfx, datalogger (Node), bbq (older RFX meat)
    model: str | None = None  # the cloud's ``device``: signals, rfx gateway, rfx meat, node
    firmware: str | None = None
    battery: int | None = None  # percent
    battery_state: str | None = None
    wifi_rssi: int | None = None  # dBm (cloud field ``wifi_stength``, sic)
    gateway_rssi: int | None = None  # dBm, RFX meat probes
    display_units: Unit | None = None
    status: str | None = None
    transmit_interval_s: int | None = None
    recording_interval_s: int | None = None
    heartbeat_interval_s: int | None = None
    last_seen: datetime | None = None
    last_telemetry_saved: datetime | None = None
    session_start: datetime | None = None
    account_id: str | None = None
    fan: Fan | None = None
    probes: tuple[Probe, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)  # every decoded field, unknown ones too

    @property
    def name(self) -> str:
        """What a person calls the device: its label, else its model and serial."""
        return self.label or f"{(self.model or self.type or 'ThermoWorks').title()} {self.serial}"

    @property
    def signal_dbm(self) -> int | None:
        return self.wifi_rssi if self.wifi_rssi is not None else self.gateway_rssi

    def offline_after(self) -> timedelta:
        """How long the device may stay silent before it counts as offline."""
        intervals = [
            s
            for s in (self.transmit_interval_s, self.heartbeat_interval_s)
            if s is not None and s > 0
        ]
        seconds = max([MIN_OFFLINE_AFTER_S, *(MISSED_INTERVALS_OFFLINE * s for s in intervals)])
        return timedelta(seconds=seconds)

    def is_online(self, now: datetime) -> bool:
        """Judged from ``lastSeen`` (or ``lastTelemetrySaved``) against the device's interval."""
        seen = self.last_seen or self.last_telemetry_saved
        return seen is not None and now - seen <= self.offline_after()


@dataclass(frozen=True, kw_only=True, slots=True)
class Reading:
    """One probe value at one time: what is stored and what alerts and sessions consume."""

    serial: str
    channel: int
    time: datetime  # aware UTC; the cloud's lastTelemetrySaved where it has one
    value: float | None  # None: probe unplugged
    unit: Unit

    @property
    def measurement(self) -> Measurement | None:
        return (
            None
            if self.value is None or math.isnan(self.value)
            else Measurement(self.value, self.unit)
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Poll:
    """What one poll of one linked account produced: the pipeline's unit of work."""

    user_id: int
    polled_at: datetime  # aware UTC, when the poll finished
    devices: tuple[Device, ...]
    readings: tuple[Reading, ...]  # only the new ones (lastTelemetrySaved moved)
    malformed: int = 0  # documents skipped because they could not be parsed


@dataclass(frozen=True, slots=True)
class Tokens:
    """A signed-in cloud session (the client's) as stored, encrypted; never shown in a repr."""

    id_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime
    uid: str | None = None


class FiringEvent(StrEnum):
    """What a firing says happened (the Home Assistant event type)."""

    TARGET_REACHED = "target_reached"
    TOO_HIGH = "too_high"
    TOO_LOW = "too_low"
    RISING = "rising"
    FALLING = "falling"
