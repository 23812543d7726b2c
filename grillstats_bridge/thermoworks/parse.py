"""Decoded Firestore documents -> ``domain`` types, tolerant of every known cloud quirk.

Every field is optional. Numbers arrive as strings or numbers (``gatewayRSSI``
is a string), values are doubles, integers or null, the Wi-Fi signal is spelled
``wifi_stength``, a humidity channel's alarm may claim °F, values carry float32
noise. Unknown fields are kept: ``Device.extra`` and ``Probe.extra`` hold every
decoded field, so nothing a firmware update adds is lost. Only a document that
cannot mean anything (no serial, no channel number, a non-numeric value, an
unknown unit) raises :class:`MalformedDocument`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from grillstats_bridge.domain import (
    AlarmSetting,
    Device,
    Fan,
    FanState,
    Probe,
    Unit,
    clean_float,
    convert_temperature,
)
from grillstats_bridge.thermoworks.errors import MalformedDocument, MalformedResponse
from grillstats_bridge.thermoworks.firestore import Document, parse_timestamp

# ThermaData loggers report 180-189 in ``battery``; it is not a percentage.
_BATTERY_RANGE = range(0, 101)


@dataclass(frozen=True, slots=True)
class UserProfile:
    """The user document: read once per login."""

    uid: str
    account_id: str
    preferred_units: Unit | None = None
    time_zone: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def parse_user(document: Document) -> UserProfile:
    """The user profile; without ``accountId`` no device can be found, so the answer is unusable."""
    f = document.fields
    account_id = as_text(f.get("accountId"))
    if not account_id:
        raise MalformedResponse("user document: no accountId")
    return UserProfile(
        uid=document.id,
        account_id=account_id,
        preferred_units=as_unit(f.get("preferredUnits")),
        time_zone=as_text(f.get("timeZone")),
        extra=dict(f),
    )


def parse_device(document: Document, probes: Sequence[Probe] = ()) -> Device:
    """A device document (``devices/{serial}``) and its already parsed channels."""
    f = document.fields
    serial = as_text(f.get("serial")) or as_text(f.get("deviceId")) or document.id
    if not serial:
        raise MalformedDocument("device document: no serial")
    battery = as_int(f.get("battery"))
    return Device(
        serial=serial,
        label=as_text(f.get("label")),
        type=as_text(f.get("type")),
        model=as_text(f.get("device")),
        firmware=as_text(f.get("firmware")),
        battery=battery if battery in _BATTERY_RANGE else None,
        battery_state=as_text(f.get("batteryState")),
        wifi_rssi=as_int(_first(f, "wifi_stength", "wifi_strength", "wifiStrength")),
        gateway_rssi=as_int(_first(f, "gatewayRSSI", "gatewayRssi")),
        display_units=as_unit(f.get("deviceDisplayUnits")),
        status=as_text(f.get("status")),
        transmit_interval_s=as_int(f.get("transmitIntervalInSeconds")),
        recording_interval_s=as_int(f.get("recordingIntervalInSeconds")),
        heartbeat_interval_s=as_int(f.get("heartbeatInterval")),
        last_seen=as_time(f.get("lastSeen")),
        last_telemetry_saved=as_time(f.get("lastTelemetrySaved")),
        session_start=as_time(f.get("sessionStart")),
        account_id=as_text(f.get("accountId")),
        fan=parse_fan(f.get("fan")),
        probes=tuple(sorted(probes, key=lambda p: p.channel)),
        extra=dict(f),
    )


def parse_fan(raw: Any) -> Fan | None:
    if not isinstance(raw, Mapping):
        return None
    state = as_int(raw.get("state"))
    return Fan(
        connected=as_bool(raw.get("connected")),
        set_temperature=as_float(_first(raw, "setTemp", "set_temp")),
        channel=as_int(_first(raw, "fan_channel", "fanChannel")),
        state=FanState.from_code(state),
    )


def parse_channel(serial: str, document: Document, default_unit: Unit | None = None) -> Probe:
    """A channel document (``devices/{serial}/channels/{n}``) of the device ``serial``."""
    f = document.fields
    number = as_int(f.get("number"))
    if number is None:
        number = as_int(document.id)
    if number is None or not 0 <= number <= 99:
        raise MalformedDocument(f"{serial} channel {document.id}: no channel number")
    raw_value = f.get("value")
    value: float | None = None
    if raw_value is not None:
        value = as_float(raw_value)
        if value is None and not _is_nan(raw_value):
            raise MalformedDocument(f"{serial} channel {number}: value is not a number")
    units_text = as_text(f.get("units"))
    if units_text:
        try:
            unit = Unit.parse(units_text)
        except ValueError:
            raise MalformedDocument(
                f"{serial} channel {number}: unknown units {units_text[:10]!r}"
            ) from None
    else:
        unit = default_unit or Unit.FAHRENHEIT
    return Probe(
        serial=serial,
        channel=number,
        label=as_text(f.get("label")),
        value=None if value is None else clean_float(value),
        unit=unit,
        status=as_text(f.get("status")),
        alarm_high=parse_alarm(f.get("alarmHigh"), unit),
        alarm_low=parse_alarm(f.get("alarmLow"), unit),
        last_seen=as_time(f.get("lastSeen")),
        last_telemetry_saved=as_time(f.get("lastTelemetrySaved")),
        extra=dict(f),
    )


def parse_alarm(raw: Any, channel_unit: Unit) -> AlarmSetting | None:
    """An alarm, with its value in the channel's unit.

    A humidity channel's alarm may say ``F``: the channel's unit is trusted
    instead. A temperature alarm in the other temperature unit is converted.
    """
    if not isinstance(raw, Mapping):
        return None
    value = as_float(raw.get("value"))
    stated = as_unit(raw.get("units"))
    if (
        value is not None
        and channel_unit.is_temperature
        and stated is not None
        and stated.is_temperature
        and stated is not channel_unit
    ):
        value = convert_temperature(value, stated, channel_unit)
    return AlarmSetting(
        enabled=as_bool(raw.get("enabled")) or False,
        alarming=as_bool(raw.get("alarming")) or False,
        value=None if value is None else clean_float(value),
        unit=channel_unit,
    )


# ------------------------------------------------------------------------------ coercions


def _first(f: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if f.get(key) is not None:
            return f[key]
    return None


def _is_nan(raw: Any) -> bool:
    return isinstance(raw, float) and math.isnan(raw)


# C0 and C1 control characters (NUL included): nothing a label needs, and PostgreSQL
# refuses NUL in text outright.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def as_text(raw: Any) -> str | None:
    """Cloud text as the bridge keeps it: trimmed, without control characters."""
    if raw is None or isinstance(raw, (Mapping, list)):
        return None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    text = str(raw)
    if not text.isprintable():
        text = _CONTROL.sub("", text)
    text = text.strip()
    return text or None


def as_float(raw: Any) -> float | None:
    """A finite number from a double, an integer or a numeric string; None otherwise."""
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, (int, float)):
        number = float(raw)
    elif isinstance(raw, str):
        try:
            number = float(raw.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def as_int(raw: Any) -> int | None:
    """An integer from ``-55``, ``"-55"``, ``-55.0`` or ``"-55.0"``; None otherwise."""
    number = as_float(raw)
    if number is None:
        return None
    return round(number)


def as_bool(raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, (int, float)):
        return raw != 0
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return raw.strip().lower() in ("true", "1", "yes")
    return None


def as_unit(raw: Any) -> Unit | None:
    text = as_text(raw)
    if text is None:
        return None
    try:
        return Unit.parse(text)
    except ValueError:
        return None


def as_time(raw: Any) -> datetime | None:
    """A timestamp value, an ISO string, or epoch seconds or milliseconds."""
    if isinstance(raw, datetime):
        return raw
    if isinstance(raw, str):
        try:
            return parse_timestamp(raw)
        except ValueError:
            return None
    number = as_float(raw)
    if number is None or number <= 0:
        return None
    if number > 1e11:  # milliseconds (1e11 s is the year 5138)
        number /= 1000
    try:
        return datetime.fromtimestamp(number, UTC)
    except (OverflowError, OSError, ValueError):
        return None
