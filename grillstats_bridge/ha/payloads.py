"""Discovery configs and JSON states from the entity table (pure): what HA is told and
what it then reads, per row, with a memo so unchanged configs are not rebuilt."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from grillstats_bridge.domain import (
    Probe,
)
from grillstats_bridge.ha.entities import (
    OFFLINE,
    ONLINE,
    ORIGIN,
    TABLE,
    BridgeStatus,
    C,
    Component,
    DeviceView,
    EntityDescription,
    JsonValue,
    ProbeView,
    Scope,
    Source,
    Table,
    _session_unit,
    model_name,
)
from grillstats_bridge.ha.naming import Naming, Target

# What every discovery config says, for zlib to refer to: a config packed with it is a
# fifth of its JSON text (145 of 646 bytes on average over tests/sample_devices.py).
_ZDICT = (
    '"payload_on":"True","payload_off":"False","entity_category":"diagnostic",'
    '"entity_category":"config","automation_type":"trigger","subtype":"","command_topic":"",'
    '"suggested_display_precision":1,"icon":"mdi:","device_class":"temperature",'
    '"state_class":"measurement","unit_of_measurement":"\u00b0F","json_attributes_topic":"",'
    '"json_attributes_template":"{{ {\'\': value_json.} | tojson }}",'
    '{"name":"","unique_id":"grillstats_","state_topic":"grillstats/grillstats/device/",'
    '"value_template":"{{ value_json. }}",'
    '"availability":[{"topic":"grillstats/grillstats/status"},{"topic":""}],'
    '"availability_mode":"all","device":{"identifiers":["grillstats_"],"name":"",'
    '"manufacturer":"ThermoWorks","model":"Signals","serial_number":"",'
    '"via_device":"grillstats_bridge","sw_version":""},'
    '"origin":{"name":"Grill Stats Bridge","sw_version":"0.1.0"}}'
).encode()


def pack(text: str) -> bytes:
    """A config's JSON text, compressed (the same text always packs to the same bytes)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _ZDICT)
    return packer.compress(text.encode()) + packer.flush()


def unpack(packed: bytes) -> str:
    return zlib.decompressobj(-15, _ZDICT).decompress(packed).decode()


@dataclass(frozen=True, kw_only=True, slots=True)
class EntityConfig:
    """One discovery config: its topic, its entity's unique id and its payload.

    Only the payload's JSON text is kept, and that compressed (:func:`pack`): a bridge
    holds tens of thousands of configs (36,000 at 1,000 devices) and their text was
    most of its discovery memory, while a config is read only to publish it.
    ``payload`` parses the text again, for tests and tools.
    """

    component: Component
    topic: str
    unique_id: str | None  # device triggers have none
    packed: bytes  # the payload as published (compact JSON), packed

    @classmethod
    def of(
        cls,
        component: Component,
        topic: str,
        unique_id: str | None,
        payload: Mapping[str, JsonValue],
    ) -> EntityConfig:
        return cls(
            component=component, topic=topic, unique_id=unique_id, packed=pack(dumps(payload))
        )

    @property
    def payload(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.json())
        return loaded

    def json(self) -> str:
        """The payload's JSON text, as published."""
        return unpack(self.packed)


@dataclass(frozen=True, kw_only=True, slots=True)
class State:
    """One state message: a JSON object, or a plain word on an availability topic."""

    topic: str
    payload: str
    availability: bool = False  # an online/offline word, not a JSON state


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# orjson writes what _ENCODER writes (compact, UTF-8, the same shortest floats) but floats
# under 1e-4, which it spells 0.00001 or 1e-7 where json writes 1e-05 and 1e-07: an output
# that may hold one is encoded again by json, so that every payload stays byte for byte.
_SMALL_FLOAT = re.compile(rb"\de-\d|0\.0000")
# What json refuses (a datetime, a dataclass) orjson must refuse too.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps(value: JsonValue) -> str:
    """Compact, stable JSON (key order as built), UTF-8 (``°F`` stays readable).

    orjson, three times faster than json on a probe's state (every reading publishes
    one), with json for what orjson writes differently or refuses (non-string keys,
    integers past 64 bits). One difference is left: a NaN, which json refuses, is null.
    """
    try:
        out = orjson.dumps(value, option=_ORJSON_OPTIONS)
    except TypeError:
        return _ENCODER.encode(value)
    if (b"e-" in out or b"0.0000" in out) and _SMALL_FLOAT.search(out):
        return _ENCODER.encode(value)
    return out.decode()


def entity_config(
    naming: Naming, row: EntityDescription[C], ctx: C, target: Target
) -> EntityConfig:
    """The discovery config of one entity of one subject."""
    object_id = f"{target.object_id}_{row.key}"
    topic = naming.config_topic(row.component, object_id)
    if row.component is Component.DEVICE_AUTOMATION:
        # A device trigger: no unique id, no name, no availability; HA fires it on `topic`.
        trigger = {
            "automation_type": "trigger",
            "topic": target.event_topic,
            **row.extra,
            **({"subtype": subtype} if (subtype := row.name_for(ctx)) is not None else {}),
            "device": dict(target.device),
            "origin": ORIGIN,
        }
        return EntityConfig.of(row.component, topic, None, trigger)
    unique_id = naming.unique_id(object_id)
    availability = target.availability if row.device_availability else target.bridge_availability
    payload: dict[str, JsonValue] = {"name": row.name_for(ctx), "unique_id": unique_id}
    if row.source is Source.STATE and row.value_fn is not None:
        payload["state_topic"] = target.state_topic
        payload["value_template"] = f"{{{{ value_json.{row.key} }}}}"
    elif row.source is Source.EVENT:
        payload["state_topic"] = target.event_topic
    if row.command:
        payload["command_topic"] = target.command_topic(row.key)
    if row.component is Component.BINARY_SENSOR:
        # The template renders Python's True / False / None; None is HA's "unknown".
        payload["payload_on"] = "True"
        payload["payload_off"] = "False"
    optional = {
        "device_class": row.device_class,
        "state_class": row.state_class,
        "unit_of_measurement": row.unit_for(ctx),
        "entity_category": row.entity_category,
        "icon": row.icon,
        "options": list(row.options) if row.options else None,
        "suggested_display_precision": row.precision,
    }
    payload.update({k: v for k, v in optional.items() if v is not None})
    if row.attributes:
        pairs = ", ".join(f"'{k}': value_json.{k}" for k in row.attributes)
        payload["json_attributes_topic"] = target.state_topic
        payload["json_attributes_template"] = f"{{{{ {{{pairs}}} | tojson }}}}"
    payload.update(row.extra)
    payload["availability"] = [{"topic": t} for t in availability]
    payload["availability_mode"] = "all"
    payload["device"] = dict(target.device)
    payload["origin"] = ORIGIN
    return EntityConfig.of(row.component, topic, unique_id, payload)


_Known = tuple[Any, str | None, str | None, EntityConfig]  # row, name, unit, config


class ConfigMemo:
    """Each entity's last config, reused while what it is built from is unchanged.

    A config depends on its subject only through the row's name and unit, and the
    target (a row's attribute keys are declared, not computed): the publisher
    rebuilds every subject at every poll, and this keeps that from rebuilding (and
    re-encoding) unchanged configs.
    """

    def __init__(self) -> None:
        # object id -> (naming, target, id(row) -> (row, name, unit, config)): a subject's
        # configs under one entry, so that each costs one small tuple (a key and an inputs
        # tuple per config were more memory than the packed configs themselves)
        self._configs: dict[str, tuple[Naming, Target, dict[int, _Known]]] = {}
        # serial -> (what the device's configs were built from, the configs)
        self._devices: dict[str, tuple[Any, tuple[EntityConfig, ...]]] = {}
        # state topic -> (the device it was built from, the rest of its inputs, the state)
        self._states: dict[str, tuple[Any, tuple[Any, ...], State | None]] = {}

    def config(
        self, naming: Naming, row: EntityDescription[C], ctx: C, target: Target
    ) -> EntityConfig:
        name, unit = row.name_for(ctx), row.unit_for(ctx)
        subject = self._configs.get(target.object_id)
        if (
            subject is None
            or not (subject[0] is naming or subject[0] == naming)
            or not (subject[1] is target or subject[1] == target)
        ):
            subject = self._configs[target.object_id] = (naming, target, {})
        known = subject[2].get(id(row))
        if known is not None and known[0] is row and known[1] == name and known[2] == unit:
            return known[3]
        config = entity_config(naming, row, ctx, target)
        subject[2][id(row)] = (row, name, unit, config)
        return config

    def device_configs(
        self, serial: str, inputs: Any, build: Callable[[], tuple[EntityConfig, ...]]
    ) -> tuple[EntityConfig, ...]:
        """A whole device's configs, the same tuple while ``inputs`` are unchanged.

        The publisher recognises the tuple (``is``) and then only compares states.
        """
        known = self._devices.get(serial)
        if known is not None and known[0] == inputs:
            return known[1]
        configs = build()
        self._devices[serial] = (inputs, configs)
        return configs

    def state(
        self, scope: Scope[C], ctx: C, target: Target, view: DeviceView, cook: object
    ) -> State | None:
        """A session's or a probe's state, the same while its device view is unchanged but
        for the cooks of other probes (``cook``: the subject's own, or None).

        After a commit the publisher rebuilds every device whose cook estimates moved,
        and a device's session and most of its probes are then what they were. Neither
        scope reads the view's cooks but through ``ProbeView.cook``.
        """
        rest = (scope, view.name, view.online, view.session, view.alerts, cook)
        known = self._states.get(target.state_topic)
        if known is not None and known[0] is view.device and known[1] == rest:
            return known[2]
        state = scope_state(scope, ctx, target)
        self._states[target.state_topic] = (view.device, rest, state)
        return state

    def clear(self) -> None:
        """Forget everything (when subjects went away, so that their configs do not linger)."""
        self._configs.clear()
        self._devices.clear()
        self._states.clear()

    def __len__(self) -> int:
        return sum(len(known) for _, _, known in self._configs.values())


def scope_configs(
    naming: Naming, scope: Scope[C], ctx: C, target: Target, memo: ConfigMemo | None = None
) -> list[EntityConfig]:
    build = memo.config if memo is not None else entity_config
    return [build(naming, row, ctx, target) for row in scope.entities if row.exists_fn(ctx)]


def scope_state(scope: Scope[C], ctx: C, target: Target) -> State | None:
    """The subject's JSON state: every existing row's value and attributes, plus extras."""
    values: dict[str, JsonValue] = {}
    for key, exists_fn, value_fn, attributes, attributes_fn in scope.state_rows:
        if exists_fn is not None and not exists_fn(ctx):
            continue
        if value_fn is not None:
            values[key] = value_fn(ctx)
        if attributes_fn is not None:
            given = attributes_fn(ctx)
            for name in attributes:
                values[name] = given.get(name)
    if scope.extras_fn is not None:
        for key, value in scope.extras_fn(ctx).items():
            values.setdefault(key, value)
    return State(topic=target.state_topic, payload=dumps(values)) if values else None


@dataclass(frozen=True, kw_only=True)
class Publication:
    """Everything one subject publishes: discovery configs and states, in publishing order."""

    configs: tuple[EntityConfig, ...]
    states: tuple[State, ...]

    @property
    def topics(self) -> set[str]:
        return {c.topic for c in self.configs} | {s.topic for s in self.states}


def bridge_publication(
    naming: Naming, bridge: BridgeStatus, table: Table = TABLE, memo: ConfigMemo | None = None
) -> Publication:
    """The bridge device: its own entities and one group per linked account."""
    configs: list[EntityConfig] = []
    states: list[State] = []
    target = naming.bridge_target(bridge)
    configs += scope_configs(naming, table.bridge, bridge, target, memo)
    states += _some(scope_state(table.bridge, bridge, target))
    for account in bridge.accounts:
        t = naming.account_target(account, bridge.version)
        configs += scope_configs(naming, table.account, account, t, memo)
        states += _some(scope_state(table.account, account, t))
    return Publication(configs=tuple(configs), states=tuple(states))


def config_inputs(view: DeviceView) -> tuple[Any, ...]:
    """Everything a device's discovery configs depend on, and nothing of its values.

    Names, units, which entities exist and the HA device block come from these;
    tests/test_discovery.py checks, over simulated cooks, that configs built from
    the same inputs are the same (a new row that depends on more must add it here).
    """
    d = view.device
    probes = tuple((p.channel, p.label, p.unit) for p in d.probes)
    return (
        view.name,
        d.serial,
        model_name(d),
        d.firmware,
        d.fan is not None,
        probes,
        _session_unit(view),
        tuple(a.channel for a in view.alerts if a.target is not None),  # the cook rows
    )


def device_publication(
    naming: Naming, view: DeviceView, table: Table = TABLE, memo: ConfigMemo | None = None
) -> Publication:
    """A ThermoWorks device: availability, its own entities, its session's, then each probe's."""
    target = naming.device_target(view)
    session = naming.session_target(view, target)
    probes = [ProbeView(device=view, probe=p) for p in sorted(view.device.probes, key=_channel)]
    probe_targets = [naming.probe_target(pv, target) for pv in probes]

    def build() -> tuple[EntityConfig, ...]:
        configs = scope_configs(naming, table.device, view, target, memo)
        configs += scope_configs(naming, table.session, view, session, memo)
        for pv, pt in zip(probes, probe_targets, strict=True):
            configs += scope_configs(naming, table.probe, pv, pt, memo)
        return tuple(configs)

    if memo is None:
        configs = build()
    else:
        inputs = (naming, id(table), config_inputs(view))
        configs = memo.device_configs(view.device.serial, inputs, build)
    states = [
        State(
            topic=naming.availability_topic(view.device.serial),
            payload=ONLINE if view.online else OFFLINE,
            availability=True,
        )
    ]
    states += _some(scope_state(table.device, view, target))
    if memo is None:
        states += _some(scope_state(table.session, view, session))
        for pv, pt in zip(probes, probe_targets, strict=True):
            states += _some(scope_state(table.probe, pv, pt))
    else:
        states += _some(memo.state(table.session, view, session, view, None))
        for pv, pt in zip(probes, probe_targets, strict=True):
            states += _some(memo.state(table.probe, pv, pt, view, pv.cook))
    return Publication(configs=configs, states=tuple(states))


def cook_states(
    naming: Naming, old: DeviceView, fresh: DeviceView, table: Table = TABLE
) -> list[State] | None:
    """The states a change of a device's cook estimates (``old`` -> ``fresh``) moves, as
    :func:`device_publication` builds them: the device's own and those of the probes whose
    estimate changed. None when more than that depends on the change (its configs, a state
    that would disappear): the whole device is built again."""
    if config_inputs(fresh) != config_inputs(old):
        return None
    target = naming.device_target(fresh)
    states = list(_some(scope_state(table.device, fresh, target)))
    before = {c.channel: c for c in old.cook}
    after = {c.channel: c for c in fresh.cook}
    for probe in sorted(fresh.device.probes, key=_channel):
        if before.get(probe.channel) != after.get(probe.channel):
            view = ProbeView(device=fresh, probe=probe)
            state = scope_state(table.probe, view, naming.probe_target(view, target))
            if state is None:
                return None
            states.append(state)
    return states


def session_state(naming: Naming, view: DeviceView, table: Table = TABLE) -> State | None:
    """Only the state of a device's session entities (what changes after a poll's database part)."""
    return scope_state(table.session, view, naming.session_target(view, naming.device_target(view)))


def _channel(probe: Probe) -> int:
    return probe.channel


def _some(state: State | None) -> Sequence[State]:
    return [state] if state is not None else []
