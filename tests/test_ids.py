"""Ids derived from serials: today's ids stay, and no two serials share one.

``golden/ids.txt`` pins every id a Home Assistant installed with the version
before collision-free ids knows for the test fleet (``tests/sample_devices.py``
and every shipped simulator scenario): discovery config topics, unique ids,
device identifiers, state, availability, event and command topics. It was
generated from that version's code; a change to it means installed HA loses
entities. Regenerate only on purpose (GRILLSTATS_UPDATE_GOLDEN=1).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from grillstats_bridge.domain import Device, Fan, Measurement, Probe, Unit
from grillstats_bridge.ha.entities import TABLE, CurrentSession, DeviceView, ProbeAlerts
from grillstats_bridge.ha.ids import device_id, sanitize
from grillstats_bridge.ha.naming import Naming
from grillstats_bridge.ha.payloads import device_publication
from grillstats_bridge.simulator.scenario import list_scenarios, load_scenario
from tests.sample_devices import sample_devices

NOW = datetime(2026, 11, 27, 18, 30, tzinfo=UTC)
GOLDEN = Path(__file__).parent / "golden" / "ids.txt"


def fleet() -> Iterator[tuple[str, Device]]:
    """Every device of the test fleet, with where it comes from."""
    for device in sample_devices(NOW):
        yield "sample_devices", device
    for name in list_scenarios():
        for spec in load_scenario(name).devices:
            probes = tuple(
                Probe(serial=spec.serial, channel=c.number, label=c.label, value=100.0, unit=c.unit)
                for c in spec.channels
            )
            fan = None if spec.fan is None else Fan(connected=True, channel=spec.fan.channel)
            device = Device(
                serial=spec.serial,
                label=spec.label,
                type=spec.type,
                model=spec.model,
                firmware=spec.firmware,
                display_units=spec.display_units,
                last_seen=NOW,
                fan=fan,
                probes=probes,
            )
            yield f"scenario {name}", device


def full_view(device: Device) -> DeviceView:
    """The device with a running session and alerts on every probe: every entity exists."""
    session = CurrentSession(
        session_id=1,
        name="Cook",
        session_type="auto",
        start=NOW - timedelta(hours=1),
        duration=timedelta(hours=1),
        unit=Unit.FAHRENHEIT,
        minimum=1.0,
        maximum=2.0,
        average=1.5,
    )
    alerts = tuple(
        ProbeAlerts(channel=p.channel, target=Measurement(200.0, p.unit), active=True)
        for p in device.probes
    )
    return DeviceView.of(device, NOW, session=session, alerts=alerts)


def _topics(payload: dict[str, Any]) -> Iterator[str]:
    for key in ("state_topic", "command_topic", "json_attributes_topic", "topic"):
        if key in payload:
            yield f"{key} {payload[key]}"
    for item in payload.get("availability", ()):
        yield f"availability {item['topic']}"
    for identifier in payload.get("device", {}).get("identifiers", ()):
        yield f"identifier {identifier}"


def id_lines() -> list[str]:
    """``<serial> <what> <id>``, sorted: every id of every device and probe of the fleet."""
    naming = Naming(instance_id="grillstats")
    lines: set[str] = set()
    for _, device in fleet():
        pub = device_publication(naming, full_view(device), TABLE)
        for config in pub.configs:
            lines.add(f"{device.serial} config {config.topic}")
            if config.unique_id is not None:
                lines.add(f"{device.serial} unique_id {config.unique_id}")
            lines.update(f"{device.serial} {t}" for t in _topics(config.payload))
        lines.update(f"{device.serial} state {s.topic}" for s in pub.states)
    return sorted(lines)


def test_todays_ids_of_the_test_fleet_are_kept() -> None:
    """No id that a Home Assistant installed with the earlier version knows changes."""
    lines = id_lines()
    if os.environ.get("GRILLSTATS_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert lines == GOLDEN.read_text(encoding="utf-8").splitlines()
    serials = {d.serial for _, d in fleet()}
    assert len(serials) >= 10  # the sample devices and the scenarios' devices, all of them


# ---------------------------------------------------------------------------- the rule

SERIAL_TEXT = st.text(alphabet=st.sampled_from("Aa0:_-./ é²\x00"), max_size=12) | st.text(
    max_size=12
)


@pytest.mark.parametrize(
    ("serial", "expected"),
    [
        ("10:06:1C:6F:47:70", "10_06_1C_6F_47_70"),
        ("M100081209", "M100081209"),
        ("B0:B2:1C:00:00:01", "B0_B2_1C_00_00_01"),
        ("abc-def", "abc-def"),
    ],
)
def test_real_serials_keep_their_id(serial: str, expected: str) -> None:
    assert device_id(serial) == expected == sanitize(serial)


def test_serials_that_sanitize_alike_get_different_ids() -> None:
    """The collision of the issue: the second user's serial gets a hash suffix."""
    mac, lookalike = "AA:BB:CC:DD:EE:01", "AA_BB_CC_DD_EE_01"
    assert sanitize(mac) == sanitize(lookalike)  # what ids were
    assert device_id(mac) == "AA_BB_CC_DD_EE_01"
    assert (
        device_id(lookalike)
        == "AA_BB_CC_DD_EE_01__" + sha256(b"AA_BB_CC_DD_EE_01").hexdigest()[:10]
    )
    # The suffixed id cannot be reached by a kept serial either.
    suffixed = device_id(lookalike)
    assert device_id(suffixed.replace("_", ":")) != suffixed
    for odd in ("a::b", ":a", "a:", "", "a b", "a/b", "a+b", "a#b", "²", "ä"):
        assert "__" in device_id(odd), odd


@given(SERIAL_TEXT, SERIAL_TEXT)
def test_two_serials_never_share_an_id(a: str, b: str) -> None:
    assume(a != b)
    assert device_id(a) != device_id(b)


@given(SERIAL_TEXT)
def test_an_id_is_a_safe_topic_level(serial: str) -> None:
    assert re.fullmatch(r"[A-Za-z0-9_-]+", device_id(serial))
