"""The entity table: discovery payloads and state values, pure (no broker)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from grillstats_bridge import __version__
from grillstats_bridge.domain import Device, Unit
from grillstats_bridge.ha.entities import (
    TABLE,
    AccountStatus,
    BridgeHealth,
    BridgeStatus,
    Component,
    CurrentSession,
    DeviceView,
    EntityDescription,
    Source,
    Table,
)
from grillstats_bridge.ha.ids import sanitize
from grillstats_bridge.ha.naming import Naming
from grillstats_bridge.ha.payloads import (
    Publication,
    bridge_publication,
    device_publication,
    dumps,
    pack,
)
from tests import ha_rules
from tests.sample_devices import CELSIUS, GATEWAY, NODE, SIGNALS, sample_devices

NOW = datetime(2026, 11, 27, 18, 30, tzinfo=UTC)
NAMING = Naming(instance_id="home", base_topic="grillstats", discovery_prefix="homeassistant")
BRIDGE = BridgeStatus(
    status=BridgeHealth.OK,
    last_poll=NOW - timedelta(seconds=5),
    cloud_errors=3,
    accounts=(
        AccountStatus(user_id=1, label="alice@example.com"),
        AccountStatus(user_id=7, label="bob", reauth_needed=True),
    ),
)


def everything(naming: Naming = NAMING, table: Table = TABLE) -> list[Publication]:
    views = [DeviceView.of(d, NOW) for d in sample_devices(NOW)]
    return [
        bridge_publication(naming, BRIDGE, table),
        *(device_publication(naming, v, table) for v in views),
    ]


def flat(pubs: list[Publication]) -> tuple[dict[str, str], dict[str, str]]:
    configs = {c.topic: c.json() for p in pubs for c in p.configs}
    states = {s.topic: s.payload for p in pubs for s in p.states}
    return configs, states


def by_device(serial: str) -> Publication:
    device = next(d for d in sample_devices(NOW) if d.serial == serial)
    return device_publication(NAMING, DeviceView.of(device, NOW))


def test_every_payload_meets_home_assistants_rules() -> None:
    configs, states = flat(everything())
    assert ha_rules.check_all(configs, states, "homeassistant") == []
    # and there is something to check: every device, every probe, the bridge, two accounts
    devices = {json.loads(c)["device"]["name"] for c in configs.values()}
    assert len(devices) == 6
    # bridge 10 (4 sensors, 4 diagnostics, Poll now, Log level) + 2 accounts,
    # 5 devices x (4 + the alerts event + 10 of its session) + the fan,
    # 9 temperature probes x (3 + target, range low/high, alert active + 5 device triggers),
    # 1 humidity probe x 3
    assert len(configs) == 12 + 5 * (4 + 1 + 10) + 1 + 9 * (3 + 4 + 5) + 1 * 3


def test_the_checker_catches_what_home_assistant_refuses() -> None:
    """A checker that cannot fail proves nothing: feed it the classic mistakes."""
    bad = {
        "homeassistant/sensor/home/10:06:1C/config": {"unique_id": "a", "state_topic": "s"},
        "homeassistant/sensor/home/b/config": {
            "unique_id": "b",
            "state_topic": "s",
            "device_class": "temperature",
            "unit_of_measurement": "F",
            "object_id": "grill_b",
            "origin": {"sw_version": "1"},
        },
        "homeassistant/sensor/home/c/config": {"state_topic": "s", "entity_category": "config"},
        "homeassistant/sensor/home/d/config": {"unique_id": "b", "state_topic": "s"},
        "homeassistant/sensor/home/e/config": {
            "unique_id": "e",
            "state_topic": "t",
            "value_template": "{{ value_json.temperature }}",
            "device_class": "temperature",
            "unit_of_measurement": "°F",
        },
    }
    found = ha_rules.check_all(
        {t: json.dumps(p) for t, p in bad.items()},
        {"t": json.dumps({"temperature": "hot"})},
        "homeassistant",
    )
    for expected in (
        "characters outside",
        "unit 'F' is not allowed",
        "object_id is deprecated",
        "origin without name",
        "no unique_id",
        "may only be diagnostic",
        "unique_id b also used",
        "needs a number",
    ):
        assert any(expected in line for line in found), (expected, found)


def test_probe_temperature_payload_golden() -> None:
    pub = by_device(SIGNALS)
    config = next(c for c in pub.configs if c.unique_id == "home_10_06_1C_6F_47_70_p1_temperature")
    assert config.topic == "homeassistant/sensor/home/10_06_1C_6F_47_70_p1_temperature/config"
    assert json.loads(config.json()) == {
        "name": "Brisket",
        "unique_id": "home_10_06_1C_6F_47_70_p1_temperature",
        "state_topic": "grillstats/home/device/10_06_1C_6F_47_70/probe/1",
        "value_template": "{{ value_json.temperature }}",
        "device_class": "temperature",
        "state_class": "measurement",
        "unit_of_measurement": "°F",
        "suggested_display_precision": 1,
        "availability": [
            {"topic": "grillstats/home/status"},
            {"topic": "grillstats/home/device/10_06_1C_6F_47_70/availability"},
        ],
        "availability_mode": "all",
        "device": {
            "identifiers": ["home_10_06_1C_6F_47_70"],
            "name": "Backyard Signals",
            "manufacturer": "ThermoWorks",
            "model": "Signals",
            "serial_number": "10:06:1C:6F:47:70",
            "via_device": "home_bridge",
            "sw_version": "1.4.2",
        },
        "origin": {"name": "Grill Stats Bridge", "sw_version": __version__},
    }


def test_states_golden_with_an_unplugged_probe_as_null() -> None:
    states = {s.topic: s.payload for s in by_device(SIGNALS).states}
    root = "grillstats/home/device/10_06_1C_6F_47_70"
    seen = (NOW - timedelta(seconds=20)).isoformat()
    assert list(states) == [
        f"{root}/availability",
        root,
        f"{root}/session",
        *(f"{root}/probe/{n}" for n in range(1, 5)),
    ]
    assert states[f"{root}/availability"] == "online"
    # No session runs: every value unknown (null), never 0.
    assert json.loads(states[f"{root}/session"]) == {
        "status": "idle",
        "session_id": None,
        "session_type": None,
        "name": None,
        "start_time": None,
        "duration": None,
        "min_temperature": None,
        "max_temperature": None,
        "avg_temperature": None,
        "serial": "10:06:1C:6F:47:70",
    }
    assert json.loads(states[root]) == {
        "online": True,
        "battery": 87,
        "signal": -52,
        "last_seen": seen,
        "serial": "10:06:1C:6F:47:70",
        "name": "Backyard Signals",
        "model": "Signals",
        "firmware": "1.4.2",
    }
    assert json.loads(states[f"{root}/probe/2"]) == {
        "temperature": 182.1,  # float32 noise rounded away
        "connected": True,
        "alarm": True,
        "alarm_high": {"enabled": True, "alarming": True, "value": 180.0, "unit": "°F"},
        "alarm_low": None,
        # no alert rule on this probe: no target, no range, nothing active
        "target": None,
        "range_low": None,
        "range_high": None,
        "alert_active": False,
        "channel": 2,
        "label": "Pork butt",
        "unit": "°F",
        "status": "NORMAL",
    }
    unplugged = json.loads(states[f"{root}/probe/3"])
    assert unplugged["temperature"] is None and unplugged["connected"] is False
    assert unplugged["alarm"] is None and unplugged["label"] == "Probe 3"
    assert states[f"{root}/probe/3"].count("null") >= 3  # JSON null, never 0


def test_celsius_humidity_fan_and_offline() -> None:
    celsius = by_device(CELSIUS)
    temps = [
        c.payload for c in celsius.configs if c.unique_id and c.unique_id.endswith("_temperature")
    ]
    assert {p["unit_of_measurement"] for p in temps} == {"°C"}
    avail = {s.topic: s.payload for s in celsius.states}
    assert avail["grillstats/home/device/10_06_1C_AA_BB_CC/availability"] == "offline"
    state = json.loads(avail["grillstats/home/device/10_06_1C_AA_BB_CC"])
    assert state["online"] is False and state["name"] == "Küche"

    node = by_device(NODE)
    ids = {c.unique_id for c in node.configs}
    assert "home_B0_B2_1C_00_00_01_p2_humidity" in ids
    assert "home_B0_B2_1C_00_00_01_p2_temperature" not in ids
    humidity = json.loads(
        dict((s.topic, s.payload) for s in node.states)[
            "grillstats/home/device/B0_B2_1C_00_00_01/probe/2"
        ]
    )
    assert humidity["humidity"] == 45.0 and humidity["unit"] == "%"
    assert humidity["alarm_high"]["unit"] == "%"  # the cloud said F; a threshold of 80 %RH

    gateway = by_device(GATEWAY)
    fan = next(c for c in gateway.configs if c.unique_id and c.unique_id.endswith("_fan"))
    assert fan.payload["options"] == ["paused", "blowing", "pulsing"]
    gw_state = json.loads(gateway.states[1].payload)
    assert gw_state["fan"] == "blowing" and gw_state["fan_set_temperature"] == 250.0
    assert gw_state["battery"] is None  # no battery reported: unknown
    assert gateway.configs[0].payload["device"]["name"] == "RFX Gateway 2C:F4:32:11:22:33"
    others = [c for p in everything()[1:] for c in p.configs if c.topic.endswith("_fan/config")]
    assert len(others) == 1  # only the gateway has a fan


def test_entities_that_must_stay_visible_when_offline_use_only_the_bridge_availability() -> None:
    configs = {c.unique_id: c.payload for c in by_device(CELSIUS).configs}
    bridge_only = [{"topic": "grillstats/home/status"}]
    assert configs["home_10_06_1C_AA_BB_CC_online"]["availability"] == bridge_only
    assert configs["home_10_06_1C_AA_BB_CC_last_seen"]["availability"] == bridge_only
    assert len(configs["home_10_06_1C_AA_BB_CC_battery"]["availability"]) == 2


def test_battery_codes_are_not_percentages() -> None:
    device = Device(serial="T1", battery=185, last_seen=NOW)
    state = device_publication(NAMING, DeviceView.of(device, NOW)).states[1]
    assert json.loads(state.payload)["battery"] is None


def test_ids_come_from_stable_ids_never_from_names() -> None:
    device = sample_devices(NOW)[0]
    renamed = dataclasses.replace(
        device,
        label="Something else",
        probes=tuple(dataclasses.replace(p, label=f"Renamed {p.channel}") for p in device.probes),
    )
    before = device_publication(NAMING, DeviceView.of(device, NOW))
    after = device_publication(NAMING, DeviceView.of(renamed, NOW, nickname="Nick"))
    assert [(c.topic, c.unique_id) for c in before.configs] == [
        (c.topic, c.unique_id) for c in after.configs
    ]
    assert after.configs[0].payload["device"]["name"] == "Nick"
    assert before.topics == after.topics


def test_two_instances_share_nothing() -> None:
    other = Naming(instance_id="cabin", base_topic="grillstats", discovery_prefix="homeassistant")
    a_configs, a_states = flat(everything())
    b_configs, b_states = flat(everything(other))
    assert not set(a_configs) & set(b_configs)
    assert not set(a_states) & set(b_states)

    def ids(configs: dict[str, str]) -> set[str]:
        out = set()
        for raw in configs.values():
            p = json.loads(raw)
            if "unique_id" in p:  # device triggers have none
                out.add(p["unique_id"])
            out.update(p["device"]["identifiers"])
        return out

    assert not ids(a_configs) & ids(b_configs)
    assert ha_rules.check_all(a_configs | b_configs, a_states | b_states, "homeassistant") == []


def test_sanitize() -> None:
    assert sanitize("10:06:1C:6F:47:70") == "10_06_1C_6F_47_70"
    assert sanitize("M100081209") == "M100081209"
    assert sanitize("a b/c+#é") == "a_b_c___"
    with pytest.raises(ValueError, match="instance id"):
        Naming(instance_id="a/b")
    with pytest.raises(ValueError, match="entity key"):
        EntityDescription(key="Bad Key", component=Component.SENSOR)
    with pytest.raises(ValueError, match="both attributes and attributes_fn"):
        EntityDescription(key="x", component=Component.SENSOR, attributes=("a",))


def test_later_features_add_entities_by_adding_rows() -> None:
    """Event entities, buttons, numbers and device triggers come out valid from rows alone."""
    table = dataclasses.replace(
        TABLE,
        probe=TABLE.probe.with_entities(
            EntityDescription(
                key="alert",
                component=Component.EVENT,
                name=lambda p: f"{p.label} alert",
                source=Source.EVENT,
                extra={"event_types": ["target_reached", "probe_disconnected"]},
            ),
            EntityDescription(
                key="target",
                component=Component.NUMBER,
                name=lambda p: f"{p.label} target",
                value_fn=lambda p: 203.0,
                unit=lambda p: p.probe.unit.symbol,
                command=True,
                entity_category="config",
                extra={"min": 32, "max": 572, "mode": "box"},
            ),
            EntityDescription(
                key="target_reached",
                component=Component.DEVICE_AUTOMATION,
                extra={"type": "target_reached", "subtype": "probe", "payload": "target_reached"},
                exists_fn=lambda p: p.probe.channel == 1,
            ),
        ),
        device=TABLE.device.with_entities(
            EntityDescription(
                key="start_session",
                component=Component.BUTTON,
                name="Start session",
                source=Source.NONE,
                command=True,
            )
        ),
    )
    configs, states = flat(everything(table=table))
    assert ha_rules.check_all(configs, states, "homeassistant") == []
    root = "grillstats/home/device/10_06_1C_6F_47_70"
    event = json.loads(configs["homeassistant/event/home/10_06_1C_6F_47_70_p1_alert/config"])
    assert event["state_topic"] == f"{root}/probe/1/event" and "value_template" not in event
    assert event["state_topic"] == NAMING.probe_event_topic(SIGNALS, 1)
    button = json.loads(configs["homeassistant/button/home/10_06_1C_6F_47_70_start_session/config"])
    assert button["command_topic"] == f"{root}/start_session/set"
    number = json.loads(configs["homeassistant/number/home/10_06_1C_6F_47_70_p1_target/config"])
    assert number["command_topic"] == f"{root}/probe/1/target/set"
    assert json.loads(states[f"{root}/probe/1"])["target"] == 203.0
    trigger = json.loads(
        configs["homeassistant/device_automation/home/10_06_1C_6F_47_70_p1_target_reached/config"]
    )
    assert trigger["topic"] == f"{root}/probe/1/event" and "unique_id" not in trigger
    assert NAMING.device_event_topic(SIGNALS) == f"{root}/event"
    assert trigger["device"]["identifiers"] == ["home_10_06_1C_6F_47_70"]


def test_a_running_session_on_its_own_topic_with_buttons_and_an_event() -> None:
    """Active: every value, in the device's unit (a °F session on a °C device converted)."""
    device = next(d for d in sample_devices(NOW) if d.serial == CELSIUS)
    cooking = CurrentSession(
        session_id=42,
        name="Cook · Fri 27 Nov 2026 16:00",
        session_type="auto",
        start=NOW - timedelta(hours=2, minutes=30, seconds=59),
        duration=timedelta(hours=2, minutes=30, seconds=59),
        unit=Unit.FAHRENHEIT,
        minimum=68.0,
        maximum=212.0,
        average=140.0,
    )
    pub = device_publication(NAMING, DeviceView.of(device, NOW, session=cooking))
    configs = {c.topic: json.loads(c.json()) for c in pub.configs}
    states = {s.topic: json.loads(s.payload) for s in pub.states if not s.availability}
    raw_configs = {c.topic: c.json() for c in pub.configs}
    raw_states = {s.topic: s.payload for s in pub.states}
    assert ha_rules.check_all(raw_configs, raw_states, "homeassistant") == []
    root = NAMING.session_topic(CELSIUS)
    assert root == "grillstats/home/device/10_06_1C_AA_BB_CC/session"
    assert states[root] == {
        "status": "active",
        "session_id": 42,
        "session_type": "auto",
        "name": "Cook · Fri 27 Nov 2026 16:00",
        "start_time": "2026-11-27T15:59:01+00:00",
        "duration": 150,  # whole minutes
        "min_temperature": 20.0,
        "max_temperature": 100.0,
        "avg_temperature": 60.0,
        "serial": CELSIUS,
    }
    prefix, oid = "homeassistant", "home/10_06_1C_AA_BB_CC_session"
    average = configs[f"{prefix}/sensor/{oid}_avg_temperature/config"]
    assert average["device_class"] == "temperature" and average["unit_of_measurement"] == "°C"
    assert average["state_topic"] == root
    duration = configs[f"{prefix}/sensor/{oid}_duration/config"]
    assert (duration["device_class"], duration["unit_of_measurement"]) == ("duration", "min")
    status = configs[f"{prefix}/sensor/{oid}_status/config"]
    assert status["options"] == ["idle", "active"]
    start = configs[f"{prefix}/button/{oid}_start/config"]
    end = configs[f"{prefix}/button/{oid}_end/config"]
    assert start["command_topic"] == f"{root}/start/set" and "state_topic" not in start
    assert end["command_topic"] == f"{root}/end/set"
    event = configs[f"{prefix}/event/{oid}_event/config"]
    assert event["state_topic"] == NAMING.session_event_topic(CELSIUS) == f"{root}/event"
    assert event["event_types"] == ["session_started", "session_ended"]
    assert event["state_topic"] != NAMING.device_event_topic(CELSIUS)  # the alerts' topic
    # Every session entity belongs to the device, and stays while the device is offline.
    session_configs = [c for t, c in configs.items() if "_session_" in t]
    assert len(session_configs) == 10
    assert all(c["device"] == configs[next(iter(configs))]["device"] for c in session_configs)
    assert all(c["availability"] == [{"topic": NAMING.status_topic}] for c in session_configs)


def test_a_devices_configs_are_reused_only_while_what_they_are_built_from_is_unchanged() -> None:
    """The publisher's memo hands back a device's configs while config_inputs() agree.

    Over many variants of every sample device (values, online, sessions, alerts, cooks,
    names, units, probes, firmware), the memo's configs and states must equal those
    built from scratch; and an update of values alone must give the very same tuple.
    """
    from grillstats_bridge.domain import Measurement
    from grillstats_bridge.ha.cook_entities import ProbeCook
    from grillstats_bridge.ha.entities import ProbeAlerts
    from grillstats_bridge.ha.payloads import ConfigMemo

    table = TABLE
    memo = ConfigMemo()
    session = CurrentSession(
        session_id=4,
        name="Brisket",
        session_type="auto",
        start=NOW - timedelta(hours=3),
        duration=timedelta(hours=3),
        unit=Unit.CELSIUS,
        minimum=20.0,
        maximum=110.0,
        average=80.0,
    )

    def variants(device: Device) -> list[DeviceView]:
        first = device.probes[0] if device.probes else None
        out = [
            DeviceView.of(device, NOW),
            DeviceView.of(device, NOW + timedelta(days=2)),  # offline
            DeviceView.of(device, NOW, "Smoker"),
            DeviceView.of(device, NOW, session=session),
            DeviceView.of(dataclasses.replace(device, firmware="9.9.9"), NOW),
            DeviceView.of(dataclasses.replace(device, probes=device.probes[1:]), NOW),
        ]
        if first is not None:
            alerts = (
                ProbeAlerts(channel=first.channel, target=Measurement(200.0, Unit.FAHRENHEIT)),
            )
            relabelled = dataclasses.replace(first, label="Renamed")
            celsius = dataclasses.replace(first, unit=Unit.CELSIUS, value=None)
            out += [
                DeviceView.of(device, NOW, alerts=alerts),
                DeviceView.of(
                    dataclasses.replace(device, probes=(relabelled, *device.probes[1:])), NOW
                ),
                DeviceView.of(
                    dataclasses.replace(device, probes=(celsius, *device.probes[1:])), NOW
                ),
            ]
            # The same device with cooks: the memo's session and probe states ignore only
            # the cooks of other probes.
            for channel in {first.channel, device.probes[-1].channel}:
                for minutes in (90.0, 60.0):
                    cook = ProbeCook(
                        channel=channel,
                        state="cooking",
                        done_at=NOW + timedelta(minutes=minutes),
                        minutes_left=minutes,
                        progress=40.0,
                    )
                    out.append(DeviceView.of(device, NOW, alerts=alerts, cook=(cook,)))
        return out

    checked = 0
    for step in range(3):
        for device in sample_devices(NOW, step=step):
            for view in variants(device):
                cached = device_publication(NAMING, view, table, memo)
                fresh = device_publication(NAMING, view, table)
                assert [c.json() for c in cached.configs] == [c.json() for c in fresh.configs]
                assert cached.states == fresh.states
                checked += 1
            # values moved, nothing else: the memo gives back the very same tuple
            warmer = tuple(
                dataclasses.replace(p, value=None if p.value is None else p.value + 1.5)
                for p in device.probes
            )
            later = dataclasses.replace(device, probes=warmer)
            before = device_publication(NAMING, DeviceView.of(device, NOW), table, memo)
            after = device_publication(NAMING, DeviceView.of(later, NOW), table, memo)
            assert after.configs is before.configs
    assert checked > 40


def test_the_bridge_device_links_to_the_web_app_when_its_address_is_known() -> None:
    linked = dataclasses.replace(NAMING, configuration_url="https://grill.example.com/")
    configs, states = flat(everything(linked))
    assert ha_rules.check_all(configs, states, "homeassistant") == []
    devices = {
        c["device"]["identifiers"][0]: c["device"] for c in map(json.loads, configs.values())
    }
    assert devices["home_bridge"]["configuration_url"] == "https://grill.example.com/"
    assert all("configuration_url" not in d for k, d in devices.items() if k != "home_bridge")
    plain, _ = flat(everything())
    assert not any("configuration_url" in c for c in plain.values())


def test_configs_are_kept_packed_and_published_as_built() -> None:
    """A config is kept compressed (a bridge holds tens of thousands): a fifth of its text."""
    configs = [c for p in everything() for c in p.configs]
    texts = [c.json() for c in configs]
    assert texts == [dumps(c.payload) for c in configs]  # the text round-trips exactly
    assert all(pack(t) == c.packed for t, c in zip(texts, configs, strict=True))  # stable
    assert sum(len(c.packed) for c in configs) < 0.3 * sum(len(t.encode()) for t in texts)
    assert not hasattr(configs[0], "__dict__")  # slots: no dict per config either
