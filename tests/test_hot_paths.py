"""The fast paths of every poll give what the general code gives (values and errors)."""

from __future__ import annotations

import enum
import math
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from grillstats_bridge.domain import Reading, Unit
from grillstats_bridge.ha.payloads import _ENCODER, dumps
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.devices import json_safe
from grillstats_bridge.store.readings import readings_between, write_readings
from grillstats_bridge.thermoworks.client import Endpoints, ThermoworksClient, loads
from grillstats_bridge.thermoworks.errors import MalformedDocument
from grillstats_bridge.thermoworks.firestore import decode_fields, decode_value
from grillstats_bridge.thermoworks.transport import CloudSession

ODD_AND_PLAIN: dict[str, Any] = {
    "s": {"stringValue": "Pit"},
    "i": {"integerValue": "100"},
    "i_number": {"integerValue": 100},
    "i_float": {"integerValue": 100.0},
    "d": {"doubleValue": 225.5},
    "d_int": {"doubleValue": 225},
    "d_nan": {"doubleValue": "NaN"},
    "d_nan_number": {"doubleValue": float("nan")},
    "d_inf": {"doubleValue": "Infinity"},
    "b": {"booleanValue": True},
    "b_text": {"booleanValue": "TRUE"},
    "n": {"nullValue": None},
    "t": {"timestampValue": "2026-11-28T09:15:55.368000Z"},
    "t_nanos": {"timestampValue": "2026-11-28T09:15:55.368123456Z"},
    "t_offset": {"timestampValue": "2026-11-28T10:15:55+0100"},
    "m": {
        "mapValue": {
            "fields": {
                "reading": {"mapValue": {"fields": {"value": {"doubleValue": 1.5}}}},
                "when": {"timestampValue": "2026-11-28T09:15:55Z"},
                "odd": {"integerValue": 7.0},
            }
        }
    },
    "m_empty": {"mapValue": {}},
    "a": {"arrayValue": {"values": [{"integerValue": "1"}, {"stringValue": "x"}]}},
    "r": {"referenceValue": "projects/p/databases/(default)/documents/devices/X"},
    "g": {"geoPointValue": {"latitude": 1.0, "longitude": 2.0}},
}


def test_fields_decode_as_value_by_value() -> None:
    decoded = decode_fields(ODD_AND_PLAIN)
    expected = {key: decode_value(value, key) for key, value in ODD_AND_PLAIN.items()}
    assert list(decoded) == list(expected)
    for key, value in expected.items():
        assert decoded[key] == value, key
        assert type(decoded[key]) is type(value), key
    assert decoded["t"] == datetime(2026, 11, 28, 9, 15, 55, 368000, tzinfo=UTC)
    assert decoded["t_offset"] == datetime(2026, 11, 28, 9, 15, 55, tzinfo=UTC)
    assert decoded["m"]["reading"] == {"value": 1.5}
    assert decoded["d_nan"] is None and decoded["d_nan_number"] is None
    assert math.isinf(decoded["d_inf"])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"x": {"integerValue": "12.5"}}, "x: bad integerValue"),
        ({"x": {"timestampValue": "yesterday"}}, "x: bad timestampValue"),
        ({"x": {"doubleValue": True}}, "x: bad doubleValue"),
        ({"x": {"stringValue": 3}}, "x: bad stringValue"),
        ({"x": {"stringValue": "a", "integerValue": "1"}}, "x: not a Firestore value"),
        (
            {"x": {"mapValue": {"fields": {"y": {"integerValue": "1.5"}}}}},
            "x.y: bad integerValue",
        ),
        ({"x": {"mysteryValue": 1}}, "unknown Firestore value type"),
    ],
)
def test_malformed_values_name_their_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(MalformedDocument, match=message):
        decode_fields(fields)


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 2


def test_json_safe() -> None:
    when = datetime(2026, 11, 28, 9, 15, tzinfo=UTC)
    value = {
        "s": "x",
        1: 2,
        "b": True,
        "n": None,
        "f": 1.5,
        "nan": float("nan"),
        "inf": float("inf"),
        "when": when,
        "day": date(2026, 11, 28),
        "color": Color.RED,
        "level": Level.HIGH,
        "nested": {"list": [when, (1, float("nan"))], "deep": {"x": Color.RED}},
    }
    assert json_safe(value) == {
        "s": "x",
        "1": 2,
        "b": True,
        "n": None,
        "f": 1.5,
        "nan": None,
        "inf": None,
        "when": "2026-11-28T09:15:00+00:00",
        "day": "2026-11-28",
        "color": "red",
        "level": 2,
        "nested": {"list": ["2026-11-28T09:15:00+00:00", [1, None]], "deep": {"x": "red"}},
    }


def test_the_daemon_path_imports_neither_alembic_nor_the_simulator() -> None:
    """``grillstats-bridge run`` loads every command module: they must stay light (memory)."""
    code = (
        "import sys, grillstats_bridge.cli, grillstats_bridge.bridge.daemon;"
        "print(sorted(m for m in ('alembic', 'grillstats_bridge.simulator.server')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,  # this tree's package, first on the path
    )
    assert out.stdout.strip() == "[]"


def test_the_cloud_session_reads_the_environment_once_per_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "firestore.example")
    session = CloudSession()
    url = "https://identity.example/v1/accounts:signInWithPassword?key=k"
    plain = requests.Session().merge_environment_settings(url, {}, None, None, None)
    settings = session.merge_environment_settings(url, {}, None, None, None)
    assert settings == plain
    assert settings["proxies"]["https"] == "http://proxy.example:3128"
    bypassed = "https://firestore.example/v1/projects/p:runQuery"
    assert (
        "https" not in session.merge_environment_settings(bypassed, {}, None, None, None)["proxies"]
    )
    settings["proxies"]["https"] = "changed by a caller"  # callers get copies
    monkeypatch.setenv("HTTPS_PROXY", "http://other.example:3128")  # not read again
    again = session.merge_environment_settings(url + "&x=1", {}, None, None, None)
    assert again["proxies"]["https"] == "http://proxy.example:3128"
    assert isinstance(ThermoworksClient(Endpoints.resolve("thermoworks"))._http, CloudSession)


def test_readings_written_in_one_statement_edge_cases(database: Database) -> None:
    """Nothing to write; the same reading twice in one batch (a replay and a new poll)."""
    start = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    batch = [
        Reading(
            serial="S1",
            channel=1,
            time=start + timedelta(seconds=15 * i),
            value=200.0 + i,
            unit=Unit.FAHRENHEIT,
        )
        for i in range(5)
    ]
    unplugged = Reading(serial="S1", channel=2, time=start, value=None, unit=Unit.FAHRENHEIT)
    with database.transaction() as session:
        assert write_readings(session, []) == 0
        assert write_readings(session, [unplugged]) == 0
        assert write_readings(session, [*batch, *batch]) == 10  # offered, not stored
    with database.session() as session:
        rows = readings_between(session, "S1", 1, start)
        assert [(r.value, r.unit) for r in rows] == [(200.0 + i, "F") for i in range(5)]
        assert rows[0].time == start


def test_a_netrc_entry_never_replaces_the_bearer_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests applies ~/.netrc to any request without auth, over our Authorization header."""
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine firestore.example login someone password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    request = requests.Request(
        "POST",
        "https://firestore.example/v1/projects/p:runQuery",
        headers={"Authorization": "Bearer id-token"},
    )
    assert requests.Session().prepare_request(request).headers["Authorization"] != (
        "Bearer id-token"
    )  # what a plain session does
    prepared = CloudSession().prepare_request(request)
    assert prepared.headers["Authorization"] == "Bearer id-token"


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(JSON_VALUES)
def test_payloads_are_the_bytes_json_writes(value: Any) -> None:
    """dumps (orjson, json where they differ) writes what json.dumps would, byte for byte."""
    assert dumps(value) == _ENCODER.encode(value)


@pytest.mark.parametrize("value", [1e-05, 7.887e-05, -3.9e-08, 1e16, 1e22, 0.0001, -0.0, 1.0])
def test_floats_json_spells_otherwise_are_spelled_as_json_does(value: float) -> None:
    assert dumps({"v": value, "s": "e-1"}) == _ENCODER.encode({"v": value, "s": "e-1"})


def test_what_json_refuses_dumps_refuses() -> None:
    for bad in (datetime(2026, 1, 1, tzinfo=UTC), Reading, object()):
        with pytest.raises(TypeError):
            dumps({"x": bad})


ANSWER_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)  # Firestore's integers: 64 bits
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@given(ANSWER_VALUES)
def test_answers_are_decoded_as_json_decodes_them(value: Any) -> None:
    import json

    text = json.dumps(value).encode()
    assert loads(text) == json.loads(text)


def test_an_answer_only_json_reads_is_read() -> None:
    decoded = loads(b'{"a": NaN, "b": 1}')
    assert math.isnan(decoded["a"]) and decoded["b"] == 1
