"""Firestore value decoding and parsing to domain types, quirk by quirk (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from grillstats_bridge.domain import FanState, Unit
from grillstats_bridge.thermoworks.errors import (
    Action,
    MalformedDocument,
    MalformedResponse,
    action_for,
)
from grillstats_bridge.thermoworks.firestore import (
    Encoding,
    decode_document,
    decode_value,
    encode_value,
    format_timestamp,
    parse_timestamp,
)
from grillstats_bridge.thermoworks.parse import parse_channel, parse_device, parse_user

BASE = "projects/thermoworks-cloud-production/databases/(default)/documents"


def doc(path: str, **fields: Any) -> dict[str, Any]:
    return {"name": f"{BASE}/{path}", "fields": fields, "updateTime": "2026-11-28T11:00:00.5Z"}


def test_integers_as_strings_or_numbers() -> None:
    assert decode_value({"integerValue": "100"}) == 100
    assert decode_value({"integerValue": 100}) == 100
    assert decode_value({"integerValue": "-55"}) == -55
    assert decode_value({"integerValue": 7.0}) == 7


def test_timestamps_with_nine_fraction_digits() -> None:
    value = decode_value({"timestampValue": "2026-11-28T11:00:05.123456789Z"})
    assert value == datetime(2026, 11, 28, 11, 0, 5, 123456, tzinfo=UTC)
    assert parse_timestamp("2026-11-28T11:00:05Z") == datetime(2026, 11, 28, 11, 0, 5, tzinfo=UTC)
    assert parse_timestamp("2026-11-28T12:00:05.5+01:00").hour == 11
    text = format_timestamp(value, nanoseconds=True)
    assert text == "2026-11-28T11:00:05.123456000Z"
    assert parse_timestamp(text) == value


def test_nested_maps_arrays_and_odd_values() -> None:
    raw = {
        "mapValue": {
            "fields": {
                "a": {"arrayValue": {"values": [{"booleanValue": True}, {"nullValue": None}]}},
                "b": {"doubleValue": "NaN"},
                "c": {"mapValue": {}},
                "d": {"arrayValue": {}},
                "e": {"geoPointValue": {"latitude": 1.5, "longitude": 2.5}},
            }
        }
    }
    assert decode_value(raw) == {
        "a": [True, None],
        "b": None,
        "c": {},
        "d": [],
        "e": {"latitude": 1.5, "longitude": 2.5},
    }


@pytest.mark.parametrize(
    "raw",
    [
        {"integerValue": "ten"},
        {"integerValue": 1.5},
        {"timestampValue": "yesterday"},
        {"mystery": 1},
        {"stringValue": "a", "integerValue": "1"},
        "plain",
        {"mapValue": {"fields": []}},
    ],
)
def test_nonsense_values_are_malformed_documents(raw: Any) -> None:
    with pytest.raises(MalformedDocument) as info:
        decode_value(raw, "fields.value")
    assert info.value.action is Action.SKIP


def test_encode_round_trips() -> None:
    value = {
        "n": 5,
        "f": 225.5,
        "s": "x",
        "t": datetime(2026, 1, 1, tzinfo=UTC),
        "l": [1, None],
        "b": False,
    }
    for encoding in (Encoding(), Encoding(integers_as_numbers=True, nanosecond_timestamps=True)):
        assert decode_value(encode_value(value, encoding)) == value


def _signals_device() -> dict[str, Any]:
    return doc(
        "devices/10:06:1C:6F:47:70",
        serial={"stringValue": "10:06:1C:6F:47:70"},
        label={"stringValue": "Offset Smoker"},
        type={"stringValue": "signals"},
        device={"stringValue": "signals"},
        firmware={"stringValue": "1.2.9"},
        battery={"integerValue": "96"},
        batteryState={"stringValue": "NORMAL"},
        wifi_stength={"integerValue": "-61"},
        deviceDisplayUnits={"stringValue": "F"},
        transmitIntervalInSeconds={"integerValue": 15},
        heartbeatInterval={"integerValue": "60"},
        lastSeen={"timestampValue": "2026-11-28T11:00:05.123456789Z"},
        lastTelemetrySaved={"timestampValue": "2026-11-28T11:00:05.123456789Z"},
        accountId={"stringValue": "acct1"},
        brandNewFirmwareField={"mapValue": {"fields": {"x": {"integerValue": "1"}}}},
    )


def test_device_document_every_field_and_extras_kept() -> None:
    device = parse_device(decode_document(_signals_device()))
    assert device.serial == "10:06:1C:6F:47:70"
    assert device.label == "Offset Smoker"
    assert device.model == "signals" and device.type == "signals"
    assert device.battery == 96
    assert device.wifi_rssi == -61  # from the misspelled wifi_stength
    assert device.transmit_interval_s == 15 and device.heartbeat_interval_s == 60
    assert device.display_units is Unit.FAHRENHEIT
    assert device.last_seen == datetime(2026, 11, 28, 11, 0, 5, 123456, tzinfo=UTC)
    assert device.account_id == "acct1"
    assert device.extra["brandNewFirmwareField"] == {"x": 1}  # unknown fields are kept
    assert device.extra["wifi_stength"] == -61


def test_rfx_gateway_fan_and_rfx_meat_string_rssi() -> None:
    gateway = parse_device(
        decode_document(
            doc(
                "devices/10:06:1C:8A:21:04",
                type={"stringValue": "rfx"},
                device={"stringValue": "rfx gateway"},
                fan={
                    "mapValue": {
                        "fields": {
                            "connected": {"booleanValue": True},
                            "connection": {"stringValue": "wired"},
                            "setTemp": {"integerValue": "250"},
                            "fan_channel": {"integerValue": "1"},
                            "state": {"integerValue": "2"},
                        }
                    }
                },
            )
        )
    )
    assert gateway.serial == "10:06:1C:8A:21:04"  # no serial field: the document id
    assert gateway.fan is not None
    assert gateway.fan.connected is True
    assert gateway.fan.set_temperature == 250.0
    assert gateway.fan.channel == 1
    assert gateway.fan.state is FanState.PULSING

    meat = parse_device(
        decode_document(
            doc(
                "devices/M100081209",
                type={"stringValue": "bbq"},
                device={"stringValue": "rfx meat"},
                gatewayRSSI={"stringValue": "-55"},
                battery={"integerValue": 184},  # ThermaData-style: not a percentage
            )
        )
    )
    assert meat.gateway_rssi == -55 and meat.signal_dbm == -55
    assert meat.battery is None and meat.extra["battery"] == 184


def test_sparse_device_document_parses() -> None:
    device = parse_device(decode_document({"name": f"{BASE}/devices/X1"}))
    assert device.serial == "X1"
    assert device.label is None and device.probes == () and device.last_seen is None
    assert not device.is_online(datetime(2026, 1, 1, tzinfo=UTC))


def _channel(**fields: Any) -> dict[str, Any]:
    base = {
        "number": {"stringValue": "1"},
        "label": {"stringValue": "Grid Temperature"},
        "value": {"doubleValue": 225.10000610351562},
        "units": {"stringValue": "F"},
        "status": {"stringValue": "NORMAL"},
        "lastTelemetrySaved": {"timestampValue": "2026-11-28T11:00:05Z"},
    }
    base.update(fields)
    return doc("devices/S/channels/1", **base)


def test_channel_value_double_integer_or_null() -> None:
    probe = parse_channel("S", decode_document(_channel()))
    assert probe.value == 225.1  # float32 noise removed
    assert probe.connected and probe.measurement is not None
    probe = parse_channel("S", decode_document(_channel(value={"integerValue": "230"})))
    assert probe.value == 230.0
    probe = parse_channel("S", decode_document(_channel(value={"nullValue": None})))
    assert probe.value is None and not probe.connected and probe.measurement is None
    probe = parse_channel(
        "S",
        decode_document(_channel(status={"stringValue": "NO PROBE"}, value={"doubleValue": 0.0})),
    )
    assert not probe.connected  # NO PROBE: unknown, never 0
    probe = parse_channel("S", decode_document(_channel(number={"integerValue": 3})))
    assert probe.channel == 3


def test_humidity_channel_alarm_claiming_fahrenheit_is_taken_as_humidity() -> None:
    alarm = {
        "mapValue": {
            "fields": {
                "enabled": {"booleanValue": True},
                "alarming": {"booleanValue": False},
                "value": {"integerValue": "70"},
                "units": {"stringValue": "F"},
            }
        }
    }
    probe = parse_channel(
        "N",
        decode_document(
            _channel(units={"stringValue": "H"}, value={"doubleValue": 46.5}, alarmHigh=alarm)
        ),
    )
    assert probe.unit is Unit.HUMIDITY
    assert probe.alarm_high is not None
    assert probe.alarm_high.value == 70 and probe.alarm_high.unit is Unit.HUMIDITY
    assert probe.alarm_high.enabled and not probe.alarm_high.alarming


def test_temperature_alarm_in_the_other_unit_is_converted() -> None:
    alarm = {
        "mapValue": {"fields": {"value": {"integerValue": "60"}, "units": {"stringValue": "C"}}}
    }
    probe = parse_channel("S", decode_document(_channel(alarmHigh=alarm)))
    assert probe.alarm_high is not None
    assert probe.alarm_high.value == 140.0 and probe.alarm_high.unit is Unit.FAHRENHEIT
    assert probe.alarm_high.enabled is False


def test_channel_without_units_takes_the_device_unit() -> None:
    raw = _channel()
    del raw["fields"]["units"]
    assert parse_channel("S", decode_document(raw), Unit.CELSIUS).unit is Unit.CELSIUS


@pytest.mark.parametrize(
    "fields",
    [
        {"value": {"stringValue": "hot"}},
        {"units": {"stringValue": "K"}},
        {"number": {"stringValue": "first"}},
    ],
)
def test_channel_that_cannot_mean_anything_is_malformed(fields: dict[str, Any]) -> None:
    raw = _channel(**fields)
    if "number" in fields:
        raw["name"] = f"{BASE}/devices/S/channels/abc"
    with pytest.raises(MalformedDocument):
        parse_channel("S", decode_document(raw))


def test_user_document() -> None:
    user = parse_user(
        decode_document(
            doc(
                "users/uid123",
                accountId={"stringValue": "acct1"},
                preferredUnits={"stringValue": "C"},
                timeZone={"stringValue": "Europe/London"},
                emailStatus={"stringValue": "verified"},
            )
        )
    )
    assert user.uid == "uid123" and user.account_id == "acct1"
    assert user.preferred_units is Unit.CELSIUS and user.time_zone == "Europe/London"
    assert user.extra["emailStatus"] == "verified"
    with pytest.raises(MalformedResponse):
        parse_user(decode_document(doc("users/uid123")))


def test_documents_without_a_name_are_malformed() -> None:
    raws: tuple[object, ...] = ({"fields": {}}, [], {"name": "x", "fields": {}})
    for raw in raws:
        with pytest.raises(MalformedDocument):
            decode_document(raw)
    assert action_for(MalformedResponse("x")) is Action.BACKOFF
