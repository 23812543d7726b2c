"""Alerts in Home Assistant: the event entity, device triggers, target numbers, alert active.

The payloads are checked pure (against HA's rules); the commands and the states
end to end: the simulator's brisket, the real broker, SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import sqlalchemy as sa
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from grillstats_bridge.alerts.entities import alert_views
from grillstats_bridge.cli import main
from grillstats_bridge.config import MqttConfig
from grillstats_bridge.domain import Measurement, Unit
from grillstats_bridge.ha.entities import EVENT_TYPES, TABLE, DeviceView, ProbeAlerts
from grillstats_bridge.ha.naming import Naming
from grillstats_bridge.ha.payloads import device_publication
from grillstats_bridge.ha.publisher import Publisher, naming_for
from grillstats_bridge.mqtt.client import MqttClient
from grillstats_bridge.store.models import TemperatureAlert
from tests import ha_rules
from tests.fixtures.bridge import USER, MakeRig, Rig
from tests.fixtures.cloud import SIGNALS
from tests.fixtures.mqtt import WAIT, Subscriber, close_paho
from tests.sample_devices import CELSIUS, NODE, sample_devices
from tests.sample_devices import SIGNALS as SAMPLE_SIGNALS

NOW = datetime(2026, 11, 27, 18, 30, tzinfo=UTC)
NAMING = Naming(instance_id="home")
SID = "10_06_1C_6F_47_70"
DEVICE = {
    "identifiers": [f"home_{SID}"],
    "name": "Backyard Signals",
    "manufacturer": "ThermoWorks",
    "model": "Signals",
    "serial_number": SAMPLE_SIGNALS,
    "via_device": "home_bridge",
    "sw_version": "1.4.2",
}
ORIGIN = {"name": "Grill Stats Bridge"}


Alerts = dict[str, tuple[ProbeAlerts, ...]]


def publications(alerts: Alerts | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    views = [
        DeviceView.of(d, NOW, alerts=(alerts or {}).get(d.serial, ())) for d in sample_devices(NOW)
    ]
    pubs = [device_publication(NAMING, v, TABLE) for v in views]
    configs = {c.topic: json.loads(c.json()) for p in pubs for c in p.configs}
    states = {s.topic: s.payload for p in pubs for s in p.states}
    return configs, states


def without_origin_version(payload: dict[str, object]) -> dict[str, object]:
    origin = payload["origin"]
    assert isinstance(origin, dict)
    return {**payload, "origin": {"name": origin["name"]}}


# --------------------------------------------------------------------------- payloads


def test_the_event_entity_per_device() -> None:
    configs, _ = publications()
    event = configs[f"homeassistant/event/home/{SID}_alerts/config"]
    assert without_origin_version(event) == {
        "name": "Alerts",
        "unique_id": f"home_{SID}_alerts",
        "state_topic": f"grillstats/home/device/{SID}/event",
        "icon": "mdi:bell-ring",
        "event_types": [
            *("target_reached", "too_high", "too_low", "rising", "falling"),
            *("stall_started", "stall_ended", "ready"),  # the cook's (ha.cook_entities)
        ],
        "availability": [{"topic": "grillstats/home/status"}],
        "availability_mode": "all",
        "device": DEVICE,
        "origin": ORIGIN,
    }
    events = [t for t in configs if "/event/" in t and t.endswith("_alerts/config")]
    assert len(events) == len(sample_devices(NOW))  # one per device, gateways and Nodes too


def test_the_target_number_and_alert_active_per_temperature_probe() -> None:
    configs, _ = publications()
    number = configs[f"homeassistant/number/home/{SID}_p1_target/config"]
    assert without_origin_version(number) == {
        "name": "Brisket target",
        "unique_id": f"home_{SID}_p1_target",
        "state_topic": f"grillstats/home/device/{SID}/probe/1",
        "value_template": "{{ value_json.target }}",
        "command_topic": f"grillstats/home/device/{SID}/probe/1/target/set",
        "device_class": "temperature",
        "unit_of_measurement": "°F",
        "min": -100.0,
        "max": 1000.0,
        "step": 0.1,
        "mode": "box",
        "availability": [{"topic": "grillstats/home/status"}],
        "availability_mode": "all",
        "device": DEVICE,
        "origin": ORIGIN,
    }
    active = configs[f"homeassistant/binary_sensor/home/{SID}_p1_alert_active/config"]
    assert active["name"] == "Brisket alert active"
    assert active["value_template"] == "{{ value_json.alert_active }}"
    assert active["availability"] == [
        {"topic": "grillstats/home/status"},
        {"topic": f"grillstats/home/device/{SID}/availability"},
    ]
    numbers = [t for t in configs if "/number/" in t and t.endswith("_target/config")]
    # every temperature probe (unplugged ones too), never the Node's humidity channel
    assert len(numbers) == 9  # Signals 4, gateway 1, meat 1, Node 1, °C Signals 2
    assert not any(f"{NODE.replace(':', '_')}_p2_" in t for t in numbers)
    assert configs[f"homeassistant/number/home/{CELSIUS.replace(':', '_')}_p1_target/config"][
        "unit_of_measurement"
    ] == ("°C")


def test_the_range_numbers_per_temperature_probe() -> None:
    configs, _ = publications()
    for key, name in (("range_low", "Brisket range low"), ("range_high", "Brisket range high")):
        number = configs[f"homeassistant/number/home/{SID}_p1_{key}/config"]
        assert without_origin_version(number) == {
            "name": name,
            "unique_id": f"home_{SID}_p1_{key}",
            "state_topic": f"grillstats/home/device/{SID}/probe/1",
            "value_template": f"{{{{ value_json.{key} }}}}",
            "command_topic": f"grillstats/home/device/{SID}/probe/1/{key}/set",
            "device_class": "temperature",
            "unit_of_measurement": "°F",
            "min": -100.0,
            "max": 1000.0,
            "step": 0.1,
            "mode": "box",
            "availability": [{"topic": "grillstats/home/status"}],
            "availability_mode": "all",
            "device": DEVICE,
            "origin": ORIGIN,
        }
    lows = [t for t in configs if "/number/" in t and t.endswith("_range_low/config")]
    highs = [t for t in configs if "/number/" in t and t.endswith("_range_high/config")]
    assert len(lows) == len(highs) == 9  # like the targets: temperature probes only
    assert not any(f"{NODE.replace(':', '_')}_p2_" in t for t in lows + highs)
    celsius = CELSIUS.replace(":", "_")
    assert configs[f"homeassistant/number/home/{celsius}_p1_range_high/config"][
        "unit_of_measurement"
    ] == ("°C")


def test_probe_state_carries_the_range_in_the_probe_unit() -> None:
    alerts = alert_views(
        {},
        set(),
        {
            (SAMPLE_SIGNALS, 1): (
                Measurement(225, Unit.FAHRENHEIT),
                Measurement(275, Unit.FAHRENHEIT),
            ),
            (SAMPLE_SIGNALS, 2): (Measurement(150, Unit.FAHRENHEIT), None),  # one side alone
            # a °C range on a °F probe, and a °F range on a °C probe: converted
            (SAMPLE_SIGNALS, 3): (Measurement(100, Unit.CELSIUS), Measurement(120, Unit.CELSIUS)),
            (CELSIUS, 1): (Measurement(200, Unit.FAHRENHEIT), Measurement(250, Unit.FAHRENHEIT)),
        },
    )
    _, states = publications(alerts)

    def shown(serial: str, channel: int) -> tuple[object, object]:
        state = json.loads(states[f"grillstats/home/device/{serial}/probe/{channel}"])
        return state["range_low"], state["range_high"]

    assert shown(SID, 1) == (225, 275)
    assert shown(SID, 2) == (150, None)
    assert shown(SID, 3) == (212, 248)
    assert shown(SID, 4) == (None, None)
    assert shown(CELSIUS.replace(":", "_"), 1) == (93.3, 121.1)
    humidity = json.loads(states[f"grillstats/home/device/{NODE.replace(':', '_')}/probe/2"])
    assert "range_low" not in humidity and "range_high" not in humidity


def test_device_triggers_per_probe_and_event_type() -> None:
    configs, _ = publications()
    trigger = configs[f"homeassistant/device_automation/home/{SID}_p2_on_too_low/config"]
    assert without_origin_version(trigger) == {
        "automation_type": "trigger",
        "topic": f"grillstats/home/device/{SID}/probe/2/event",
        "type": "too_low",
        "payload": "too_low",
        "value_template": "{{ value_json.event_type }}",
        "qos": 1,
        "subtype": "probe_2",
        "device": DEVICE,
        "origin": ORIGIN,
    }
    mine = [json.loads(json.dumps(p)) for t, p in configs.items() if SID in t and "automation" in t]
    assert sorted((p["subtype"], p["type"]) for p in mine) == sorted(
        (f"probe_{n}", e) for n in (1, 2, 3, 4) for e in EVENT_TYPES
    )


def test_every_payload_meets_home_assistant_rules() -> None:
    alerts = alert_views(
        {(SAMPLE_SIGNALS, 1): Measurement(203, Unit.FAHRENHEIT)},
        {(SAMPLE_SIGNALS, 2)},
        {(SAMPLE_SIGNALS, 3): (Measurement(225, Unit.FAHRENHEIT), None)},
    )
    configs, states = publications(alerts)
    raw = {t: json.dumps(p) for t, p in configs.items()}
    assert ha_rules.check_all(raw, states, "homeassistant") == []


def test_probe_state_carries_the_target_in_the_probe_unit() -> None:
    alerts = alert_views(
        {
            (SAMPLE_SIGNALS, 1): Measurement(203, Unit.FAHRENHEIT),
            (CELSIUS, 1): Measurement(145, Unit.FAHRENHEIT),  # an °F alert on a °C probe
        },
        {(SAMPLE_SIGNALS, 1)},
    )
    _, states = publications(alerts)
    probe = json.loads(states[f"grillstats/home/device/{SID}/probe/1"])
    assert probe["target"] == 203 and probe["alert_active"] is True
    other = json.loads(states[f"grillstats/home/device/{SID}/probe/2"])
    assert other["target"] is None and other["alert_active"] is False
    roast = json.loads(states[f"grillstats/home/device/{CELSIUS.replace(':', '_')}/probe/1"])
    assert roast["target"] == 62.8 and roast["unit"] == "°C"
    humidity = json.loads(states[f"grillstats/home/device/{NODE.replace(':', '_')}/probe/2"])
    assert "target" not in humidity and "alert_active" not in humidity


def test_the_publisher_republishes_only_probes_whose_alerts_changed(
    mqtt_config: MqttConfig, ordered_subscriber: Subscriber
) -> None:
    naming = naming_for(mqtt_config)
    client = MqttClient(mqtt_config, status_topic=naming.status_topic, clock=lambda: NOW)
    publisher = Publisher(client, mqtt_config, table=TABLE, clock=lambda: NOW)
    marker = f"{naming.root}/test-marker"
    sub = ordered_subscriber  # QoS 0: in the order the client sent them

    def published_since_marker(mark: str) -> list[tuple[str, object]]:
        """What the client sent after the last marker, once it sent ``mark`` behind it."""
        assert client.flush(WAIT)  # QoS 1 configs acknowledged: the marker cannot overtake them
        client.publish_state(marker, mark, retain=False)
        got = sub.wait_for(lambda ms: any(m.payload == mark.encode() for m in ms), what=mark)
        marks = [i for i, m in enumerate(got) if m.topic == marker]
        between = got[marks[-2] + 1 : marks[-1]] if len(marks) > 1 else got[: marks[-1]]
        return [
            (m.topic, m.json().get("target") if m.payload.startswith(b"{") else m.text)
            for m in between
        ]

    client.start()
    try:
        assert client.wait_ready(WAIT)
        publisher.publish_devices(1, sample_devices(NOW), now=NOW)
        assert len(published_since_marker("1")) > 40  # everything
        brisket = naming.probe_topic(SAMPLE_SIGNALS, 1)
        alerts = alert_views({(SAMPLE_SIGNALS, 1): Measurement(203, Unit.FAHRENHEIT)}, set())
        publisher.publish_alerts(alerts)
        publisher.publish_alerts(alerts)  # unchanged: nothing more
        added = published_since_marker("2")
        device = brisket.rsplit("/probe/", 1)[0]  # its state gains the device's cook state
        assert [m for m in added if "/config" not in m[0]] == [(device, None), (brisket, 203)]
        assert {t.rsplit("/", 2)[1].split("_p1_")[-1] for t, _ in added if "/config" in t} == {
            *("done_at", "time_to_target", "progress", "stalled", "cook_state", "cook_method"),
            *("on_stall_started", "on_stall_ended", "on_ready"),
            "10_06_1C_6F_47_70_cook_state",  # the device's
        }  # a target brings the probe's cook entities
        publisher.publish_alerts({})
        publisher.refresh(NOW)
        removed = published_since_marker("3")
        assert [m for m in removed if "/config" not in m[0]] == [(device, None), (brisket, None)]
        assert len(removed) == len(added)  # and takes them away
    finally:
        publisher.close()
        client.stop(timeout=2)


# --------------------------------------------------------------------------- end to end

FAST = {"polling": {"active_interval": 60.0, "idle_interval": 300.0}}


def probe_topic(rig: Rig, channel: int) -> str:
    mqtt = rig.config.mqtt
    return f"{mqtt.base_topic}/{mqtt.instance_id}/device/{SID}/probe/{channel}"


def send(rig: Rig, topic: str, payload: bytes, *, retain: bool = False) -> None:
    """Publish as Home Assistant does (not retained), from another client; acknowledged."""
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.connect(rig.config.mqtt.host, rig.config.mqtt.port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(WAIT)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()
        close_paho(client)


def until(rig: Rig, condition: Callable[[], bool], what: str) -> None:
    """Run the bridge's queued work (commands) until ``condition`` holds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        rig.bridge.step()  # the clock stands still: this only runs queued jobs
        time.sleep(0.005)  # the command is on its way from the broker


def target_alerts(rig: Rig, channel: int) -> list[tuple[int, float | None, str | None, bool]]:
    with rig.database.session() as db:
        rows = db.scalars(
            sa.select(TemperatureAlert)
            .where(TemperatureAlert.device_id == SIGNALS, TemperatureAlert.probe_id == str(channel))
            .order_by(TemperatureAlert.id)
        ).all()
        return [(r.id, r.target_temperature, r.temperature_unit, bool(r.is_active)) for r in rows]


def last_state(sub: Subscriber, topic: str) -> dict[str, object]:
    sub.sync()
    found = [m for m in sub.snapshot() if m.topic == topic]
    assert found, f"nothing on {topic}"
    state: dict[str, object] = found[-1].json()
    return state


def cli(rig: Rig, tmp_path: Path, *argv: str) -> int:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database": {"url": rig.config.database.url},
                "security": {"key_file": rig.config.security.key_file},
            }
        )
    )
    return main(["--config", str(path), *argv])


def test_the_target_number_sets_changes_and_clears_the_alert(
    make_rig: MakeRig,
    subscriber: Subscriber,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = make_rig("brisket", **FAST)
    rig.run_for(10)  # the first poll: devices and probes known, states published
    state_topic = probe_topic(rig, 2)
    command = f"{state_topic}/target/set"
    # The bridge subscribed before it published this: the broker routes commands to it.
    subscriber.wait_for_message(state_topic)
    assert last_state(subscriber, state_topic)["target"] is None

    send(rig, command, b"203")
    until(rig, lambda: bool(target_alerts(rig, 2)), "the target alert")
    [(alert_id, target, unit, active)] = target_alerts(rig, 2)
    assert (target, unit, active) == (203.0, "F", True)
    assert last_state(subscriber, state_topic)["target"] == 203.0

    send(rig, command, b"205.5")
    until(rig, lambda: target_alerts(rig, 2)[0][1] == 205.5, "the changed target")
    assert target_alerts(rig, 2) == [(alert_id, 205.5, "F", True)]  # the same alert
    assert last_state(subscriber, state_topic)["target"] == 205.5

    # Bad payloads: a clear warning, the alert untouched, the bridge goes on.
    caplog.set_level(logging.INFO, logger="grillstats_bridge.alerts.entities")
    send(rig, command, b"very hot")
    send(rig, f"{probe_topic(rig, 9)}/target/set", b"200")  # a probe the device lacks
    until(rig, lambda: len(warnings(caplog)) == 2, "two warnings")
    assert (
        "ignored the target for probe 2 of 10_06_1C_6F_47_70: not a number: 'very hot'"
        in (warnings(caplog)[0])
    )
    assert "no device 10_06_1C_6F_47_70 with a probe 9" in warnings(caplog)[1]
    assert target_alerts(rig, 2) == [(alert_id, 205.5, "F", True)]
    assert rig.bridge.stats.pipeline_errors == 0

    # A change from the CLI shows in HA after the next poll.
    assert cli(rig, tmp_path, "alert", "disable", str(alert_id)) == 0
    rig.run_for(6 * 60)  # idle: a poll every 5 min
    assert last_state(subscriber, state_topic)["target"] is None
    assert cli(rig, tmp_path, "alert", "enable", str(alert_id)) == 0
    rig.run_for(6 * 60)  # idle: a poll every 5 min
    assert last_state(subscriber, state_topic)["target"] == 205.5

    send(rig, command, b"0")
    until(rig, lambda: not target_alerts(rig, 2), "the alert removed")
    assert last_state(subscriber, state_topic)["target"] is None


def cook_method(rig: Rig, channel: int) -> str | None:
    with rig.database.session() as db:
        return db.scalar(
            sa.select(TemperatureAlert.cook_method).where(
                TemperatureAlert.device_id == SIGNALS,
                TemperatureAlert.probe_id == str(channel),
                TemperatureAlert.alert_type == "target",
            )
        )


def test_the_cook_method_select_stores_the_method_and_echoes_it(
    make_rig: MakeRig,
    subscriber: Subscriber,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = make_rig("brisket", **FAST)
    rig.run_for(10)
    state_topic = probe_topic(rig, 2)
    command = f"{state_topic}/cook_method/set"
    subscriber.wait_for_message(state_topic)
    caplog.set_level(logging.INFO, logger="grillstats_bridge.alerts.entities")
    send(rig, command, b"reverse_sear")  # no target yet: refused, one line
    until(rig, lambda: len(warnings(caplog)) == 1, "a warning")
    assert "probe 2 of 10:06:1C:6F:47:70 has no target: set one first" in warnings(caplog)[0]

    send(rig, f"{state_topic}/target/set", b"130")
    until(rig, lambda: bool(target_alerts(rig, 2)), "the target alert")
    assert last_state(subscriber, state_topic)["cook_method"] == "auto"
    send(rig, command, b"reverse_sear")
    until(rig, lambda: cook_method(rig, 2) == "reverse_sear", "the method stored")
    assert last_state(subscriber, state_topic)["cook_method"] == "reverse_sear"

    send(rig, command, b"sous vide")  # not an option: one warning, the method kept
    until(rig, lambda: len(warnings(caplog)) == 2, "a second warning")
    assert warnings(caplog)[1] == (
        "alerts: ignored the cook method for probe 2 of 10_06_1C_6F_47_70: "
        "not one of auto, reverse_sear: 'sous vide'"
    )
    assert cook_method(rig, 2) == "reverse_sear"

    # Set from the CLI: shown after the next poll.
    [(alert_id, *_)] = target_alerts(rig, 2)
    assert cli(rig, tmp_path, "alert", "method", str(alert_id), "auto") == 0
    rig.run_for(6 * 60)
    assert last_state(subscriber, state_topic)["cook_method"] == "auto"
    assert cook_method(rig, 2) is None
    assert rig.bridge.stats.pipeline_errors == 0


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "grillstats_bridge.alerts.entities" and r.levelno == logging.WARNING
    ]


def test_a_target_set_from_home_assistant_fires_on_both_topics(
    make_rig: MakeRig, subscriber: Subscriber
) -> None:
    rig = make_rig("brisket", **FAST)
    rig.run_for(10)
    state_topic = probe_topic(rig, 1)
    subscriber.wait_for_message(state_topic)
    pit = last_state(subscriber, state_topic)
    assert isinstance(pit["temperature"], float) and pit["alert_active"] is False

    # A target the pit is already above: it fires on the next reading (documented).
    send(rig, f"{state_topic}/target/set", b"50")
    until(rig, lambda: bool(target_alerts(rig, 1)), "the target alert")
    rig.run_for(6 * 60)
    subscriber.sync()
    device_topic = state_topic.rsplit("/probe/", 1)[0] + "/event"
    device_events = [m for m in subscriber.snapshot() if m.topic == device_topic]
    probe_events = [m for m in subscriber.snapshot() if m.topic == f"{state_topic}/event"]
    cook = [m for m in device_events + probe_events if m.json()["event_type"] == "ready"]
    assert len(cook) == 2  # the cook's "ready" too, on both topics (tests/test_cook_mqtt.py)
    device_events = [m for m in device_events if m not in cook]
    probe_events = [m for m in probe_events if m not in cook]
    assert len(device_events) == 1 and len(probe_events) == 1
    event = device_events[0].json()
    assert probe_events[0].payload == device_events[0].payload
    assert {k: event[k] for k in ("event_type", "name", "probe", "unit", "threshold")} == {
        "event_type": "target_reached",
        "name": "Probe 1 target",
        "probe": 1,
        "unit": "°F",
        "threshold": 50.0,
    }
    assert event["temperature"] >= 50 and event["alert_id"] == target_alerts(rig, 1)[0][0]
    assert all(m.qos == 1 and not m.retain for m in device_events + probe_events)
    assert last_state(subscriber, state_topic)["alert_active"] is True
    assert last_state(subscriber, probe_topic(rig, 2))["alert_active"] is False

    send(rig, f"{state_topic}/target/set", b"")  # empty: removed, like 0
    until(rig, lambda: not target_alerts(rig, 1), "the alert removed")
    rig.run_for(6 * 60)
    assert last_state(subscriber, state_topic)["alert_active"] is False


def test_a_retained_command_is_not_applied_at_each_connect(
    make_rig: MakeRig, caplog: pytest.LogCaptureFixture
) -> None:
    rig = make_rig("brisket", start=False, **FAST)
    command = f"{probe_topic(rig, 1)}/target/set"
    range_command = f"{probe_topic(rig, 1)}/range_high/set"
    send(rig, command, b"0", retain=True)  # someone published them retained
    send(rig, range_command, b"250", retain=True)
    caplog.set_level(logging.INFO, logger="grillstats_bridge.alerts.entities")
    try:
        rig.bridge.start(threads=False)  # subscribes: the broker hands over the retained ones
        until(rig, lambda: len(warnings(caplog)) == 2, "two warnings")
        found = sorted(w.split(" of ")[0] for w in warnings(caplog))
        assert found == [
            "alerts: ignored a retained range high command for probe 1",
            "alerts: ignored a retained target command for probe 1",
        ]
        assert rig.bridge.alert_control.pending == {}
    finally:
        send(rig, command, b"", retain=True)
        send(rig, range_command, b"", retain=True)


def range_alerts(
    rig: Rig, channel: int
) -> list[tuple[int, float | None, float | None, str | None, bool]]:
    with rig.database.session() as db:
        rows = db.scalars(
            sa.select(TemperatureAlert)
            .where(
                TemperatureAlert.device_id == SIGNALS,
                TemperatureAlert.probe_id == str(channel),
                TemperatureAlert.alert_type == "range",
            )
            .order_by(TemperatureAlert.id)
        ).all()
        return [
            (r.id, r.min_temperature, r.max_temperature, r.temperature_unit, bool(r.is_active))
            for r in rows
        ]


def shown_range(sub: Subscriber, topic: str) -> tuple[object, object]:
    state = last_state(sub, topic)
    return state["range_low"], state["range_high"]


def test_the_range_numbers_create_change_refuse_and_clear_the_range_alert(
    make_rig: MakeRig,
    subscriber: Subscriber,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = make_rig("brisket", **FAST)
    rig.run_for(10)
    state_topic = probe_topic(rig, 2)
    low, high = f"{state_topic}/range_low/set", f"{state_topic}/range_high/set"
    subscriber.wait_for_message(state_topic)
    assert shown_range(subscriber, state_topic) == (None, None)
    caplog.set_level(logging.INFO, logger="grillstats_bridge.alerts.entities")

    # One side alone: shown, but no alert until the other side is set.
    send(rig, low, b"225")
    until(rig, lambda: shown_range(subscriber, state_topic) == (225.0, None), "the low shown")
    assert range_alerts(rig, 2) == []
    send(rig, high, b"275")
    until(rig, lambda: bool(range_alerts(rig, 2)), "the range alert")
    [(alert_id, *values)] = range_alerts(rig, 2)
    assert values == [225.0, 275.0, "F", True]
    assert shown_range(subscriber, state_topic) == (225.0, 275.0)
    assert target_alerts(rig, 2)[0][1] is None  # a range alert, no target

    # One side changes the same alert; the other side stays.
    send(rig, high, b"280.5")
    until(rig, lambda: range_alerts(rig, 2)[0][2] == 280.5, "the changed high")
    assert range_alerts(rig, 2) == [(alert_id, 225.0, 280.5, "F", True)]
    assert shown_range(subscriber, state_topic) == (225.0, 280.5)

    # low >= high: refused with a warning, nothing changes.
    send(rig, low, b"300")
    send(rig, high, b"225")
    until(rig, lambda: len(warnings(caplog)) == 2, "two warnings")
    assert warnings(caplog) == [
        f"alerts: range low for probe 2 of {SID} not set: "
        "range: min (300) must be below max (280.5)",
        f"alerts: range high for probe 2 of {SID} not set: "
        "range: min (225) must be below max (225)",
    ]
    assert range_alerts(rig, 2) == [(alert_id, 225.0, 280.5, "F", True)]
    assert shown_range(subscriber, state_topic) == (225.0, 280.5)

    # Changes from the CLI show after the next poll.
    assert cli(rig, tmp_path, "alert", "disable", str(alert_id)) == 0
    rig.run_for(6 * 60)  # idle: a poll every 5 min
    assert shown_range(subscriber, state_topic) == (None, None)
    assert cli(rig, tmp_path, "alert", "remove", str(alert_id)) == 0
    argv = ["--device", SIGNALS, "--probe", "2", "--type", "range", "--unit", "C"]
    assert cli(rig, tmp_path, "alert", "add", USER, *argv, "--min", "100", "--max", "120") == 0
    rig.run_for(6 * 60)
    assert shown_range(subscriber, state_topic) == (212.0, 248.0)  # °C on a °F probe
    [(cli_id, *_)] = range_alerts(rig, 2)

    # Setting one side of a °C alert from the °F number: the alert moves to °F.
    send(rig, low, b"210")
    until(rig, lambda: range_alerts(rig, 2)[0][3] == "F", "the alert in °F")
    assert range_alerts(rig, 2) == [(cli_id, 210.0, 248.0, "F", True)]

    # 0 on either side removes the alert.
    send(rig, high, b"0")
    until(rig, lambda: not range_alerts(rig, 2), "the alert removed")
    assert shown_range(subscriber, state_topic) == (None, None)
    assert rig.bridge.stats.pipeline_errors == 0


def test_a_range_side_waiting_is_dropped_by_0_and_by_an_alert_made_elsewhere(
    make_rig: MakeRig, subscriber: Subscriber, tmp_path: Path
) -> None:
    rig = make_rig("brisket", **FAST)
    rig.run_for(10)
    state_topic = probe_topic(rig, 3)
    low, high = f"{state_topic}/range_low/set", f"{state_topic}/range_high/set"
    subscriber.wait_for_message(state_topic)

    send(rig, high, b"190")
    until(rig, lambda: shown_range(subscriber, state_topic) == (None, 190.0), "the high shown")
    send(rig, low, b"")  # empty: like 0, nothing waits any more
    until(rig, lambda: shown_range(subscriber, state_topic) == (None, None), "the high dropped")
    send(rig, low, b"150")  # waits again, for a high that is not coming
    until(rig, lambda: shown_range(subscriber, state_topic) == (150.0, None), "the low shown")

    argv = ["--device", SIGNALS, "--probe", "3", "--type", "range", "--min", "160", "--max", "200"]
    assert cli(rig, tmp_path, "alert", "add", USER, *argv) == 0
    rig.run_for(6 * 60)
    assert shown_range(subscriber, state_topic) == (160.0, 200.0)  # the alert wins
    send(rig, high, b"210")
    until(rig, lambda: range_alerts(rig, 3)[0][2] == 210.0, "the changed high")
    [(_, *values)] = range_alerts(rig, 3)
    assert values == [160.0, 210.0, "F", True]  # the alert's low, not the forgotten 150
    assert shown_range(subscriber, state_topic) == (160.0, 210.0)
