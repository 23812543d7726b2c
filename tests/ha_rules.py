"""Home Assistant's rules for MQTT discovery payloads, as a checker.

Each rule comes from ../shared/docs/home-assistant-mqtt.md (HA's documentation and
its MQTT integration's source). ``problems`` returns one line per broken rule, so a
test can assert it returns nothing and show every problem at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

SAFE_LEVEL = re.compile(r"^[A-Za-z0-9_-]+$")
COMPONENTS = {
    "binary_sensor",
    "button",
    "device_automation",
    "event",
    "number",
    "select",
    "sensor",
    "switch",
    "text",
}
# Units HA accepts per sensor device class (since 2025.3.1 a wrong pair is refused).
UNITS: dict[str, set[str | None]] = {
    "temperature": {"°C", "°F", "K"},
    "battery": {"%"},
    "humidity": {"%"},
    "signal_strength": {"dB", "dBm"},
    "timestamp": {None},
    "enum": {None},
}
SENSOR_CLASSES = set(UNITS) | {"duration", "voltage", "power", "energy"}
BINARY_CLASSES = {"connectivity", "plug", "problem", "running", "heat", "cold", "battery"}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
TEMPLATE_KEY = re.compile(r"^\{\{ value_json\.([a-z0-9_]+) \}\}$")


def problems(topic: str, raw: str | bytes, prefix: str) -> list[str]:
    """What is wrong with one discovery config (empty: HA accepts it)."""
    out: list[str] = []
    levels = topic.split("/")
    pre = prefix.split("/")
    rest = levels[len(pre) :]
    if levels[: len(pre)] != pre or len(rest) not in (3, 4) or rest[-1] != "config":
        return [f"{topic}: not <prefix>/<component>/[<node_id>/]<object_id>/config"]
    component, ids = rest[0], rest[1:-1]
    if component not in COMPONENTS:
        out.append(f"{topic}: unknown component {component!r}")
    for level in ids:
        if not SAFE_LEVEL.match(level):
            out.append(f"{topic}: {level!r} has characters outside [a-zA-Z0-9_-]")
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        return [*out, f"{topic}: not JSON: {exc}"]
    if not isinstance(payload, dict):
        return [*out, f"{topic}: not a JSON object"]
    p: dict[str, Any] = payload
    where = f"{topic}:"
    if "object_id" in p:
        out.append(f"{where} object_id is deprecated (HA 2025.10)")
    origin = p.get("origin")
    if origin is not None and not (isinstance(origin, dict) and origin.get("name")):
        out.append(f"{where} origin without name (HA drops the whole message)")
    device = p.get("device")
    if component == "device_automation":
        for key in ("automation_type", "topic", "type", "subtype", "device"):
            if key not in p:
                out.append(f"{where} device trigger without {key}")
        if p.get("automation_type") != "trigger":
            out.append(f"{where} automation_type must be trigger")
    else:
        if not p.get("unique_id"):
            out.append(f"{where} no unique_id")
        if device is not None and not (device.get("identifiers") or device.get("connections")):
            out.append(f"{where} device without identifiers or connections")
    if component in ("sensor", "binary_sensor", "event") and "state_topic" not in p:
        out.append(f"{where} {component} without state_topic")
    if component == "event" and not p.get("event_types"):
        out.append(f"{where} event without event_types")
    if component in ("button", "number") and "command_topic" not in p:
        out.append(f"{where} {component} without command_topic")
    if component == "number" and float(p.get("min", 1)) >= float(p.get("max", 100)):
        out.append(f"{where} number with min not below max")
    out += _classes(where, component, p)
    category = p.get("entity_category")
    if category is not None:
        if component == "event":
            out.append(f"{where} events take no entity_category")
        elif component == "sensor" and category != "diagnostic":
            out.append(f"{where} a sensor's entity_category may only be diagnostic")
        elif category not in ("diagnostic", "config"):
            out.append(f"{where} unknown entity_category {category!r}")
    for avail in p.get("availability", []):
        if not isinstance(avail, dict) or "topic" not in avail:
            out.append(f"{where} availability entry without topic")
    if p.get("availability_mode", "latest") not in ("all", "any", "latest"):
        out.append(f"{where} bad availability_mode")
    expire = p.get("expire_after")
    if expire is not None and not (isinstance(expire, int) and expire > 0):
        out.append(f"{where} expire_after must be a positive integer")
    name = p.get("name")
    if isinstance(name, str) and device and name.startswith(str(device.get("name", "\0"))):
        out.append(f"{where} entity name repeats the device name (HA prefixes it)")
    return out


def _classes(where: str, component: str, p: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    dc, sc, unit = p.get("device_class"), p.get("state_class"), p.get("unit_of_measurement")
    if component == "sensor":
        if dc is not None and dc not in SENSOR_CLASSES:
            out.append(f"{where} unknown sensor device_class {dc!r}")
        if dc in UNITS and unit not in UNITS[dc]:
            out.append(f"{where} unit {unit!r} is not allowed with device_class {dc}")
        if sc is not None and sc not in STATE_CLASSES:
            out.append(f"{where} unknown state_class {sc!r}")
        if dc == "enum":
            if not p.get("options"):
                out.append(f"{where} enum sensor without options")
            if sc is not None:
                out.append(f"{where} enum sensor with a state_class")
        if dc == "timestamp" and sc is not None:
            out.append(f"{where} timestamp sensor with a state_class")
    elif component == "binary_sensor":
        if dc is not None and dc not in BINARY_CLASSES:
            out.append(f"{where} unknown binary_sensor device_class {dc!r}")
        if unit is not None or sc is not None:
            out.append(f"{where} binary_sensor with a unit or state_class")
    return out


def numeric(payload: Mapping[str, Any]) -> bool:
    """Whether HA needs a number (or null) in this entity's state."""
    dc = payload.get("device_class")
    return bool(
        payload.get("state_class")
        or payload.get("unit_of_measurement")
        or dc in ("temperature", "battery", "humidity", "signal_strength")
    )


def check_all(
    configs: Mapping[str, str | bytes], states: Mapping[str, str | bytes], prefix: str
) -> list[str]:
    """Every config alone, then across configs: unique ids unique, and the states they read.

    ``states`` (topic -> payload) are the state messages published with them: each
    value a config's template reads must be present, and numeric (or null) where
    HA needs a number.
    """
    out: list[str] = []
    seen_ids: dict[str, str] = {}
    triggers: set[tuple[str, str, str]] = set()
    for topic, raw in sorted(configs.items()):
        out += problems(topic, raw, prefix)
        try:
            p = json.loads(raw)
        except ValueError:
            continue
        uid = p.get("unique_id")
        if uid is not None:
            if uid in seen_ids:
                out.append(f"{topic}: unique_id {uid} also used by {seen_ids[uid]}")
            seen_ids[uid] = topic
        if "automation_type" in p:
            key = (json.dumps(p["device"]["identifiers"]), p.get("type"), p.get("subtype"))
            if key in triggers:
                out.append(f"{topic}: (device, type, subtype) not unique")
            triggers.add(key)
        out += _state_problems(topic, p, states)
    return out


def _state_problems(
    topic: str, p: Mapping[str, Any], states: Mapping[str, str | bytes]
) -> list[str]:
    state_topic = p.get("state_topic")
    template = p.get("value_template")
    if state_topic is None or template is None:
        return []
    match = TEMPLATE_KEY.match(template)
    if match is None:
        return [f"{topic}: unexpected value_template {template!r}"]
    if state_topic not in states:
        return [f"{topic}: nothing published on its state topic {state_topic}"]
    state = json.loads(states[state_topic])
    key = match.group(1)
    if key not in state:
        return [f"{topic}: state on {state_topic} has no {key!r}"]
    value = state[key]
    out = []
    if (
        numeric(p)
        and value is not None
        and (isinstance(value, bool) or not isinstance(value, (int, float)))
    ):
        out.append(f"{topic}: HA needs a number in {key}, got {value!r}")
    low, high = p.get("min"), p.get("max")
    if (
        isinstance(value, (int, float))
        and low is not None
        and high is not None
        and not low <= value <= high
    ):
        out.append(f"{topic}: {value!r} outside the number's range {low} to {high}")
    options = p.get("options")
    if options and value is not None and value not in options:
        out.append(f"{topic}: {value!r} is not one of the options {options}")
    attrs = p.get("json_attributes_template")
    if attrs is not None:
        for name in re.findall(r"value_json\.([a-z0-9_]+)", attrs):
            if name not in state:
                out.append(f"{topic}: attribute {name!r} missing from the state")
    return out


def all_problems(items: Iterable[tuple[str, str]], prefix: str) -> list[str]:
    """Split a list of (topic, payload) into configs and states and check them."""
    configs, states = {}, {}
    for topic, payload in items:
        if topic.startswith(prefix + "/"):
            configs[topic] = payload
        else:
            states[topic] = payload
    return check_all(configs, states, prefix)
