"""Firestore REST values: decoding typed values to Python, and encoding them (for the simulator).

Firestore wraps every value (``{"integerValue": "100"}``, ``{"timestampValue":
"...Z"}``...). Decoding is tolerant where the cloud is known to vary (integers
as strings or numbers, up to nine fraction digits in timestamps, ``"NaN"``
doubles) and strict where a value makes no sense, raising
:class:`MalformedDocument` naming the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from grillstats_bridge.domain import ensure_utc
from grillstats_bridge.thermoworks.errors import MalformedDocument

_TIMESTAMP = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$"
)


@lru_cache(maxsize=4096)  # a poll repeats its times (lastSeen, lastTelemetrySaved...)
def parse_timestamp(text: str) -> datetime:
    """An aware UTC datetime from RFC 3339 with up to 9 fraction digits (nanoseconds dropped)."""
    match = _TIMESTAMP.match(text.strip())
    if match is None:
        raise ValueError(f"not a timestamp: {text!r}")
    day, clock, fraction, zone = match.groups()
    micro = (fraction or "").ljust(6, "0")[:6]
    if zone in (None, "Z"):
        zone = "+00:00"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    return datetime.fromisoformat(f"{day}T{clock}.{micro}{zone}").astimezone(UTC)


def format_timestamp(value: datetime, *, nanoseconds: bool = False) -> str:
    """RFC 3339 in UTC ending in ``Z``; 6 fraction digits, or 9 like some cloud writers."""
    text = ensure_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return f"{text}{'000' if nanoseconds else ''}Z"


def decode_value(value: Any, path: str = "value") -> Any:
    """The Python value of one Firestore typed value."""
    if not isinstance(value, Mapping) or len(value) != 1:
        raise MalformedDocument(f"{path}: not a Firestore value")
    ((kind, raw),) = value.items()
    try:
        if kind == "nullValue":
            return None
        if kind == "stringValue":
            if not isinstance(raw, str):
                raise ValueError
            return raw
        if kind == "booleanValue":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in ("true", "false"):
                return raw.lower() == "true"
            raise ValueError
        if kind == "integerValue":
            # Usually a JSON string ("100"), sometimes a number.
            if isinstance(raw, bool):
                raise ValueError
            if isinstance(raw, float):
                if not raw.is_integer():
                    raise ValueError
                return int(raw)
            return int(raw)
        if kind == "doubleValue":
            if isinstance(raw, bool):
                raise ValueError
            number = float(raw)  # also "NaN", "Infinity", "-Infinity"
            return None if math.isnan(number) else number
        if kind == "timestampValue":
            return parse_timestamp(raw)
        if kind == "mapValue":
            fields = raw.get("fields", {}) if isinstance(raw, Mapping) else None
            if not isinstance(fields, Mapping):
                raise ValueError
            return decode_fields(fields, path)
        if kind == "arrayValue":
            values = raw.get("values", []) if isinstance(raw, Mapping) else None
            if not isinstance(values, list):
                raise ValueError
            return [decode_value(v, f"{path}[{i}]") for i, v in enumerate(values)]
        if kind in ("referenceValue", "bytesValue"):
            if not isinstance(raw, str):
                raise ValueError
            return raw
        if kind == "geoPointValue":
            if not isinstance(raw, Mapping):
                raise ValueError
            return {"latitude": raw.get("latitude"), "longitude": raw.get("longitude")}
    except (TypeError, ValueError, AttributeError):
        raise MalformedDocument(f"{path}: bad {kind} {_short(raw)}") from None
    raise MalformedDocument(f"{path}: unknown Firestore value type {kind!r}")


def decode_fields(fields: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """Decode a document's (or a map's) ``fields``."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        try:
            out[str(key)] = _decode_plain(value)
        except _Unusual:  # decode_value decides, and names the field if it is malformed
            out[str(key)] = decode_value(value, f"{path}.{key}" if path else str(key))
    return out


class _Unusual(Exception):
    """A value :func:`_decode_plain` leaves to :func:`decode_value`."""


def _decode_plain(value: Any) -> Any:
    """:func:`decode_value` for the common spellings only (every poll decodes thousands of
    values): exact types, no path strings; anything else raises _Unusual."""
    if type(value) is not dict or len(value) != 1:
        raise _Unusual
    ((kind, raw),) = value.items()
    kind_of = type(raw)
    if kind == "stringValue" and kind_of is str:
        return raw
    if kind == "doubleValue" and (kind_of is float or kind_of is int):
        number = float(raw)
        return None if math.isnan(number) else number
    if kind == "timestampValue" and kind_of is str:
        try:
            return parse_timestamp(raw)
        except ValueError:
            raise _Unusual from None
    if kind == "integerValue" and (kind_of is str or kind_of is int):
        try:
            return int(raw)
        except ValueError:
            raise _Unusual from None
    if kind == "booleanValue" and kind_of is bool:
        return raw
    if kind == "nullValue":
        return None
    if kind == "mapValue" and kind_of is dict:
        fields = raw.get("fields", {})
        if type(fields) is dict:
            return {str(k): _decode_plain(v) for k, v in fields.items()}
    raise _Unusual


def _short(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True, slots=True)
class Document:
    """A decoded Firestore document."""

    name: str  # projects/P/databases/(default)/documents/devices/SERIAL
    fields: Mapping[str, Any] = field(default_factory=dict)
    update_time: datetime | None = None

    @property
    def id(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def path(self) -> str:
        """The path below ``documents/`` (``devices/SERIAL/channels/1``)."""
        _, _, rest = self.name.partition("/documents/")
        return rest


def decode_document(raw: Any) -> Document:
    """A :class:`Document` from its REST form; MalformedDocument when it makes no sense."""
    if not isinstance(raw, Mapping):
        raise MalformedDocument("document: not an object")
    name = raw.get("name")
    if not isinstance(name, str) or "/documents/" not in name:
        raise MalformedDocument("document: no name")
    fields = raw.get("fields", {})
    if not isinstance(fields, Mapping):
        raise MalformedDocument(f"{name.rsplit('/', 1)[-1]}: fields is not an object")
    update_time = None
    if isinstance(raw.get("updateTime"), str):
        try:
            update_time = parse_timestamp(raw["updateTime"])
        except ValueError:
            update_time = None
    return Document(name=name, fields=decode_fields(fields), update_time=update_time)


# ------------------------------------------------------------------------------ encoding


@dataclass(frozen=True, slots=True)
class Encoding:
    """How a writer spells values (the cloud's writers differ; the simulator imitates them)."""

    integers_as_numbers: bool = False
    nanosecond_timestamps: bool = False


PLAIN = Encoding()


def encode_value(value: Any, encoding: Encoding = PLAIN) -> dict[str, Any]:
    """The Firestore typed value of a Python value."""
    if value is None:
        return {"nullValue": None}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"integerValue": value if encoding.integers_as_numbers else str(value)}
    if isinstance(value, float):
        if math.isnan(value):
            return {"doubleValue": "NaN"}
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, datetime):
        return {
            "timestampValue": format_timestamp(value, nanoseconds=encoding.nanosecond_timestamps)
        }
    if isinstance(value, timedelta):
        return {"integerValue": str(int(value.total_seconds()))}
    if isinstance(value, Mapping):
        return {"mapValue": {"fields": encode_fields(value, encoding)}}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [encode_value(v, encoding) for v in value]}}
    raise TypeError(f"cannot encode {type(value).__name__} as a Firestore value")


def encode_fields(values: Mapping[str, Any], encoding: Encoding = PLAIN) -> dict[str, Any]:
    return {str(k): encode_value(v, encoding) for k, v in values.items()}
