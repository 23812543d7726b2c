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
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from grillstats_bridge.domain import Device, Fan, Measurement, Probe, Unit
from grillstats_bridge.ha.entities import TABLE, CurrentSession, DeviceView, ProbeAlerts
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
