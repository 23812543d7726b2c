"""Home Assistant discovery: the entity table, and the payloads and state values it gives.

Pure: no I/O. One table (:data:`TABLE`) describes every kind of entity the bridge
publishes, one row each; the same row gives the discovery payload (what HA is told)
and the value in the subject's JSON state (what HA then reads), so the two cannot
drift apart. Rows are grouped by *scope*, the thing they describe: the bridge, a
linked account, a ThermoWorks device, a probe. Later features add rows (or a scope
of their own, e.g. per alert) and get topics, unique ids, device, availability and
origin for free.

Ids and topics derive from stable ids only: the instance id, the serial (sanitised
to ``[A-Za-z0-9_-]``), the channel number, the account's user id — never a display
name, so renaming a probe renames the entity instead of making a new one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, TypeVar

from grillstats_bridge import __version__
from grillstats_bridge.domain import (
    Device,
    FanState,
    Measurement,
    Probe,
    Unit,
    clean_float,
    convert_temperature,
)

JsonValue = Any  # what json.dumps accepts; kept loose so rows stay one-liners

ONLINE = "online"
OFFLINE = "offline"
ORIGIN = {"name": "Grill Stats Bridge", "sw_version": __version__}
MANUFACTURER = "ThermoWorks"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


def sanitize(text: str) -> str:
    """``10:06:1C:6F:47:70`` -> ``10_06_1C_6F_47_70``: what HA allows in topic levels and ids."""
    return _UNSAFE.sub("_", text) or "_"


class Component(StrEnum):
    """HA entity platforms (the second level of a discovery topic)."""

    SENSOR = "sensor"
    BINARY_SENSOR = "binary_sensor"
    EVENT = "event"
    BUTTON = "button"
    NUMBER = "number"
    SWITCH = "switch"
    DEVICE_AUTOMATION = "device_automation"


class Source(StrEnum):
    """Which of its subject's topics an entity reads."""

    STATE = "state"  # a key of the subject's JSON state (value_template)
    EVENT = "event"  # the subject's event topic (event entities, device triggers)
    NONE = "none"  # nothing (a button only sends)


C = TypeVar("C")


def _always(ctx: Any) -> bool:
    return True


@dataclass(frozen=True, kw_only=True)
class EntityDescription(Generic[C]):
    """One kind of entity: how to describe it to HA and how to compute its value.

    ``key`` is stable: it ends the unique id and the config topic, and names the
    value in the state JSON. ``value_fn`` gives that value (``None`` -> JSON null ->
    *unknown* in HA, never 0). ``attributes_fn`` adds the keys named in ``attributes``
    to the state JSON, and HA shows them as the entity's attributes (the keys are
    declared so that the discovery payload never depends on values). ``exists_fn``
    says whether a subject has this entity at all (a fan only on a gateway with a fan).
    A device trigger has no name in HA: ``name`` gives its ``subtype``.
    """

    key: str
    component: Component
    name: str | Callable[[C], str] | None = None
    value_fn: Callable[[C], JsonValue] | None = None
    exists_fn: Callable[[C], bool] = _always
    device_class: str | None = None
    state_class: str | None = None
    unit: str | Callable[[C], str | None] | None = None
    entity_category: str | None = None
    icon: str | None = None
    options: tuple[str, ...] = ()
    precision: int | None = None
    attributes: tuple[str, ...] = ()
    attributes_fn: Callable[[C], Mapping[str, JsonValue]] | None = None
    source: Source = Source.STATE
    command: bool = False  # HA sends to <subject topic>/<key>/set
    device_availability: bool = True  # False: only the bridge's (stays visible when offline)
    extra: Mapping[str, JsonValue] = field(default_factory=dict)  # further discovery keys

    def __post_init__(self) -> None:
        if not _KEY.match(self.key):
            raise ValueError(f"entity key {self.key!r}: lower case letters, digits and _")
        if bool(self.attributes) != (self.attributes_fn is not None):
            raise ValueError(f"entity {self.key!r}: give both attributes and attributes_fn")

    def name_for(self, ctx: C) -> str | None:
        return self.name(ctx) if callable(self.name) else self.name

    def unit_for(self, ctx: C) -> str | None:
        return self.unit(ctx) if callable(self.unit) else self.unit


@dataclass(frozen=True, kw_only=True)
class Scope(Generic[C]):
    """The entities of one kind of subject, plus plain fields its state JSON also carries."""

    name: str
    entities: tuple[EntityDescription[C], ...]
    extras_fn: Callable[[C], Mapping[str, JsonValue]] | None = None  # for MQTT consumers

    def with_entities(self, *more: EntityDescription[C]) -> Scope[C]:
        """This scope with more rows (how later features extend the table)."""
        return Scope(name=self.name, entities=self.entities + more, extras_fn=self.extras_fn)


# --------------------------------------------------------------------------- subjects


class BridgeHealth(StrEnum):
    """The bridge's own summary state (its *Status* entity)."""

    STARTING = "starting"
    OK = "ok"
    DEGRADED = "degraded"  # some accounts or the database have trouble; the rest works
    ERROR = "error"  # nothing gets through (cloud unreachable, database down)


@dataclass(frozen=True, kw_only=True)
class AccountStatus:
    """A linked ThermoWorks account as the bridge device shows it."""

    user_id: int
    label: str  # what to call it in HA (the user's name or e-mail)
    reauth_needed: bool = False


@dataclass(frozen=True, kw_only=True)
class BridgeStatus:
    """What the bridge says about itself."""

    status: BridgeHealth = BridgeHealth.OK
    version: str = __version__
    last_poll: datetime | None = None  # the last successful poll of any account
    cloud_errors: int = 0  # failed cloud requests since the bridge started
    accounts: tuple[AccountStatus, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ProbeAlerts:
    """A probe's alerts as HA shows them: the target and range its numbers set, whether one is
    active."""

    channel: int
    target: Measurement | None = None  # in the alert's unit; shown in the probe's
    active: bool = False  # an alert fired and has not re-armed
    low: Measurement | None = None  # the range alert's sides, or one set alone from HA
    high: Measurement | None = None


@dataclass(frozen=True, kw_only=True)
class CurrentSession:
    """A device's running cooking session, as its session entities show it."""

    session_id: int | None
    name: str
    session_type: str  # auto, manual
    start: datetime
    duration: timedelta  # as of when the bridge last looked at the session
    unit: Unit | None  # of the statistics; None before the first temperature reading
    minimum: float | None
    maximum: float | None
    average: float | None


@dataclass(frozen=True, kw_only=True)
class DeviceView:
    """A ThermoWorks device as published: the cloud's data, its display name, online or not."""

    device: Device
    name: str
    online: bool
    session: CurrentSession | None = None
    alerts: tuple[ProbeAlerts, ...] = ()  # only probes with a target or an active alert

    @classmethod
    def of(
        cls,
        device: Device,
        now: datetime,
        nickname: str | None = None,
        session: CurrentSession | None = None,
        alerts: tuple[ProbeAlerts, ...] = (),
    ) -> DeviceView:
        """Name: the user's nickname, else the cloud label, else model and serial."""
        name = nickname or device.label or f"{model_name(device)} {device.serial}"
        online = device.is_online(now)
        return cls(device=device, name=name, online=online, session=session, alerts=alerts)

    @property
    def sid(self) -> str:
        return sanitize(self.device.serial)


@dataclass(frozen=True, kw_only=True)
class ProbeView:
    device: DeviceView
    probe: Probe

    @property
    def label(self) -> str:
        return self.probe.label or f"Probe {self.probe.channel}"

    @property
    def alerts(self) -> ProbeAlerts:
        channel = self.probe.channel
        return next(
            (a for a in self.device.alerts if a.channel == channel), ProbeAlerts(channel=channel)
        )


_MODELS = {
    "signals": "Signals",
    "rfx gateway": "RFX Gateway",
    "rfx meat": "RFX Meat",
    "node": "Node",
    "smoke": "Smoke",
    "smoke gateway": "Smoke Gateway",
    "rfx": "RFX",
    "datalogger": "Node",
    "bbq": "RFX Meat",
}


def model_name(device: Device) -> str:
    raw = device.model or device.type or "ThermoWorks device"
    return _MODELS.get(raw.strip().lower(), raw.strip().title())


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _percent(value: int | None) -> int | None:
    """A battery level, or None when the cloud sends a code (ThermaData's 180-189)."""
    return value if value is not None and 0 <= value <= 100 else None


def _alarm(view: ProbeView, high: bool) -> dict[str, JsonValue] | None:
    setting = view.probe.alarm_high if high else view.probe.alarm_low
    if setting is None:
        return None
    # A humidity channel's alarm may claim "F": its threshold is a percentage.
    unit = view.probe.unit if not view.probe.unit.is_temperature else setting.unit
    return {
        "enabled": setting.enabled,
        "alarming": setting.alarming,
        "value": clean_float(setting.value) if setting.value is not None else None,
        "unit": (unit or view.probe.unit).symbol,
    }


def _alarming(view: ProbeView) -> bool | None:
    settings = [s for s in (view.probe.alarm_high, view.probe.alarm_low) if s is not None]
    return any(s.alarming for s in settings) if settings else None


def _probe_value(view: ProbeView) -> float | None:
    m = view.probe.measurement
    return clean_float(m.value) if m is not None else None


def _fan_attributes(view: DeviceView) -> dict[str, JsonValue]:
    fan = view.device.fan
    unit = view.device.display_units
    return {
        "fan_connected": fan.connected if fan else None,
        "fan_set_temperature": fan.set_temperature if fan else None,
        "fan_set_temperature_unit": unit.symbol if unit else None,
    }


# --------------------------------------------------------------------------- the table

DIAGNOSTIC = "diagnostic"
MEASUREMENT = "measurement"

BRIDGE: Scope[BridgeStatus] = Scope(
    name="bridge",
    entities=(
        EntityDescription(
            key="status",
            component=Component.SENSOR,
            name="Status",
            value_fn=lambda b: b.status.value,
            device_class="enum",
            options=tuple(h.value for h in BridgeHealth),
            icon="mdi:bridge",
        ),
        EntityDescription(
            key="last_poll",
            component=Component.SENSOR,
            name="Last successful poll",
            value_fn=lambda b: _iso(b.last_poll),
            device_class="timestamp",
            entity_category=DIAGNOSTIC,
        ),
        EntityDescription(
            key="cloud_errors",
            component=Component.SENSOR,
            name="Cloud errors",
            value_fn=lambda b: b.cloud_errors,
            state_class="total_increasing",
            entity_category=DIAGNOSTIC,
            icon="mdi:cloud-alert",
        ),
        EntityDescription(
            key="version",
            component=Component.SENSOR,
            name="Version",
            value_fn=lambda b: b.version,
            entity_category=DIAGNOSTIC,
            icon="mdi:tag",
        ),
    ),
)

ACCOUNT: Scope[AccountStatus] = Scope(
    name="account",
    entities=(
        EntityDescription(
            key="reauth_needed",
            component=Component.BINARY_SENSOR,
            name=lambda a: f"{a.label} re-authentication needed",
            value_fn=lambda a: a.reauth_needed,
            device_class="problem",
        ),
    ),
    extras_fn=lambda a: {"user_id": a.user_id, "account": a.label},
)

DEVICE: Scope[DeviceView] = Scope(
    name="device",
    entities=(
        EntityDescription(
            key="online",
            component=Component.BINARY_SENSOR,
            name="Online",
            value_fn=lambda d: d.online,
            device_class="connectivity",
            entity_category=DIAGNOSTIC,
            device_availability=False,  # it must say "disconnected", not "unavailable"
        ),
        EntityDescription(
            key="battery",
            component=Component.SENSOR,
            name="Battery",
            value_fn=lambda d: _percent(d.device.battery),
            device_class="battery",
            unit="%",
            state_class=MEASUREMENT,
            entity_category=DIAGNOSTIC,
        ),
        EntityDescription(
            key="signal",
            component=Component.SENSOR,
            name="Signal strength",
            value_fn=lambda d: d.device.signal_dbm,
            device_class="signal_strength",
            unit="dBm",
            state_class=MEASUREMENT,
            entity_category=DIAGNOSTIC,
        ),
        EntityDescription(
            key="last_seen",
            component=Component.SENSOR,
            name="Last seen",
            value_fn=lambda d: _iso(d.device.last_seen or d.device.last_telemetry_saved),
            device_class="timestamp",
            entity_category=DIAGNOSTIC,
            device_availability=False,  # most useful precisely when the device is offline
        ),
        EntityDescription(
            key="fan",
            component=Component.SENSOR,
            name="Fan",
            value_fn=lambda d: (
                d.device.fan.state.value if d.device.fan and d.device.fan.state else None
            ),
            exists_fn=lambda d: d.device.fan is not None,
            device_class="enum",
            options=tuple(s.value for s in FanState),
            icon="mdi:fan",
            attributes=("fan_connected", "fan_set_temperature", "fan_set_temperature_unit"),
            attributes_fn=_fan_attributes,
        ),
    ),
    extras_fn=lambda d: {
        "serial": d.device.serial,
        "name": d.name,
        "model": model_name(d.device),
        "firmware": d.device.firmware,
    },
)

PROBE: Scope[ProbeView] = Scope(
    name="probe",
    entities=(
        EntityDescription(
            key="temperature",
            component=Component.SENSOR,
            name=lambda p: p.label,
            value_fn=_probe_value,
            exists_fn=lambda p: p.probe.unit.is_temperature,
            device_class="temperature",
            unit=lambda p: p.probe.unit.symbol,  # the probe's own unit, never converted
            state_class=MEASUREMENT,
            precision=1,
        ),
        EntityDescription(
            key="humidity",
            component=Component.SENSOR,
            name=lambda p: p.label,
            value_fn=_probe_value,
            exists_fn=lambda p: p.probe.unit is Unit.HUMIDITY,
            device_class="humidity",
            unit="%",
            state_class=MEASUREMENT,
            precision=1,
        ),
        EntityDescription(
            key="connected",
            component=Component.BINARY_SENSOR,
            name=lambda p: f"{p.label} connected",
            value_fn=lambda p: p.probe.connected,
            device_class="plug",
            entity_category=DIAGNOSTIC,
        ),
        EntityDescription(
            key="alarm",
            component=Component.BINARY_SENSOR,
            name=lambda p: f"{p.label} alarm",
            value_fn=_alarming,
            device_class="problem",
            attributes=("alarm_high", "alarm_low"),
            attributes_fn=lambda p: {"alarm_high": _alarm(p, True), "alarm_low": _alarm(p, False)},
        ),
    ),
    extras_fn=lambda p: {
        "channel": p.probe.channel,
        "label": p.label,
        "unit": p.probe.unit.symbol,
        "status": p.probe.status,
    },
)


SESSION_STATUSES = ("idle", "active")
SESSION_EVENT_TYPES = ("session_started", "session_ended")


def _session_unit(view: DeviceView) -> Unit:
    """The unit the session's temperatures are shown in: the device's, so it never flips."""
    for probe in sorted(view.device.probes, key=lambda p: p.channel):
        if probe.unit.is_temperature:
            return probe.unit
    units = view.device.display_units
    if units is not None and units.is_temperature:
        return units
    if view.session is not None and view.session.unit is not None:
        return view.session.unit
    return Unit.FAHRENHEIT


def _session_temperature(
    view: DeviceView, pick: Callable[[CurrentSession], float | None]
) -> float | None:
    session = view.session
    value = pick(session) if session is not None else None
    if session is None or session.unit is None or value is None:
        return None
    return clean_float(convert_temperature(value, session.unit, _session_unit(view)))


def _session_minutes(view: DeviceView) -> int | None:
    session = view.session
    return int(session.duration.total_seconds() // 60) if session is not None else None


def _session_temperature_row(
    key: str, name: str, pick: Callable[[CurrentSession], float | None]
) -> EntityDescription[DeviceView]:
    return EntityDescription(
        key=key,
        component=Component.SENSOR,
        name=name,
        value_fn=lambda v: _session_temperature(v, pick),
        device_class="temperature",
        unit=lambda v: _session_unit(v).symbol,
        precision=1,
        device_availability=False,
    )


# A device's cooking session (issue 7) on its own topic under the device's
# (<device root>/session, events on .../session/event): its state changes after the
# database part of a poll, the device's before it, so neither is published twice.
# Every value is null (unknown) while no session runs. The bridge's availability
# only: a session goes on for a while when the device drops off line.
SESSION: Scope[DeviceView] = Scope(
    name="session",
    entities=(
        EntityDescription(
            key="status",
            component=Component.SENSOR,
            name="Session status",
            value_fn=lambda v: "active" if v.session is not None else "idle",
            device_class="enum",
            options=SESSION_STATUSES,
            icon="mdi:grill",
            attributes=("session_id", "session_type"),
            attributes_fn=lambda v: {
                "session_id": v.session.session_id if v.session else None,
                "session_type": v.session.session_type if v.session else None,
            },
            device_availability=False,
        ),
        EntityDescription(
            key="name",
            component=Component.SENSOR,
            name="Session name",
            value_fn=lambda v: v.session.name if v.session else None,
            icon="mdi:label-outline",
            device_availability=False,
        ),
        EntityDescription(
            key="start_time",
            component=Component.SENSOR,
            name="Session start",
            value_fn=lambda v: _iso(v.session.start) if v.session else None,
            device_class="timestamp",
            device_availability=False,
        ),
        EntityDescription(
            key="duration",
            component=Component.SENSOR,
            name="Session duration",
            value_fn=_session_minutes,
            device_class="duration",
            unit="min",
            precision=0,
            device_availability=False,
        ),
        _session_temperature_row("min_temperature", "Session minimum", lambda s: s.minimum),
        _session_temperature_row("max_temperature", "Session maximum", lambda s: s.maximum),
        _session_temperature_row("avg_temperature", "Session average", lambda s: s.average),
        EntityDescription(
            key="start",
            component=Component.BUTTON,
            name="Start session",
            source=Source.NONE,
            command=True,
            icon="mdi:play-circle-outline",
            device_availability=False,
        ),
        EntityDescription(
            key="end",
            component=Component.BUTTON,
            name="End session",
            source=Source.NONE,
            command=True,
            icon="mdi:stop-circle-outline",
            device_availability=False,
        ),
        EntityDescription(
            key="event",
            component=Component.EVENT,
            name="Session",
            source=Source.EVENT,
            icon="mdi:grill",
            device_availability=False,
            extra={"event_types": list(SESSION_EVENT_TYPES)},
        ),
    ),
    extras_fn=lambda v: {"serial": v.device.serial},
)


@dataclass(frozen=True, kw_only=True)
class Table:
    """Every scope; the publisher works from one of these (tests may pass their own)."""

    bridge: Scope[BridgeStatus] = BRIDGE
    account: Scope[AccountStatus] = ACCOUNT
    device: Scope[DeviceView] = DEVICE
    probe: Scope[ProbeView] = PROBE
    session: Scope[DeviceView] = SESSION


TABLE = Table()


# --------------------------------------------------------------------------- ids and topics


@dataclass(frozen=True, kw_only=True)
class Target:
    """Where one subject's entities live: their ids, topics, HA device and availability."""

    object_id: str  # unique within the instance; entity ids are <instance>_<object_id>_<key>
    state_topic: str
    device: Mapping[str, JsonValue]
    availability: tuple[str, ...]  # every one must say "online" (availability_mode all)
    bridge_availability: tuple[str, ...]  # for entities that must stay visible when offline

    @property
    def event_topic(self) -> str:
        return f"{self.state_topic}/event"

    def command_topic(self, key: str) -> str:
        return f"{self.state_topic}/{key}/set"


@dataclass(frozen=True, kw_only=True)
class Naming:
    """The topic tree and ids of one bridge instance.

    ``<base>/<instance>/status`` online/offline; ``.../bridge`` and
    ``.../account/<user id>`` the bridge's states; ``.../device/<serial>`` a device's
    state, ``.../availability``, ``.../session`` and ``.../probe/<channel>`` under it.
    """

    instance_id: str
    base_topic: str = "grillstats"
    discovery_prefix: str = "homeassistant"

    def __post_init__(self) -> None:
        if sanitize(self.instance_id) != self.instance_id:
            raise ValueError(f"instance id {self.instance_id!r}: letters, digits, _ and - only")

    @property
    def root(self) -> str:
        return f"{self.base_topic}/{self.instance_id}"

    @property
    def status_topic(self) -> str:
        return f"{self.root}/status"

    @property
    def ha_status_topic(self) -> str:
        """Where HA announces itself (its birth and will)."""
        return f"{self.discovery_prefix}/status"

    @property
    def bridge_identifier(self) -> str:
        return f"{self.instance_id}_bridge"

    def device_root(self, serial: str) -> str:
        return f"{self.root}/device/{sanitize(serial)}"

    def availability_topic(self, serial: str) -> str:
        return f"{self.device_root(serial)}/availability"

    def probe_topic(self, serial: str, channel: int) -> str:
        return f"{self.device_root(serial)}/probe/{channel}"

    def device_event_topic(self, serial: str) -> str:
        """Where a device's events go (what its event entities and device triggers read)."""
        return f"{self.device_root(serial)}/event"

    def session_topic(self, serial: str) -> str:
        """A device's cooking session: its state, ``/event``, ``/start/set``, ``/end/set``."""
        return f"{self.device_root(serial)}/session"

    def session_event_topic(self, serial: str) -> str:
        return f"{self.session_topic(serial)}/event"

    def probe_event_topic(self, serial: str, channel: int) -> str:
        """Where a probe's events go (alert firings)."""
        return f"{self.probe_topic(serial, channel)}/event"

    def config_topic(self, component: Component | str, object_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.instance_id}/{object_id}/config"

    def unique_id(self, object_id: str) -> str:
        return f"{self.instance_id}_{object_id}"

    def bridge_device(self, version: str) -> dict[str, JsonValue]:
        default = self.instance_id == "grillstats"
        return {
            "identifiers": [self.bridge_identifier],
            "name": "Grill Stats Bridge" if default else f"Grill Stats Bridge {self.instance_id}",
            "manufacturer": "Grill Stats Bridge",
            "model": "ThermoWorks cloud bridge",
            "sw_version": version,
        }

    def bridge_target(self, bridge: BridgeStatus) -> Target:
        own = (self.status_topic,)
        return Target(
            object_id="bridge",
            state_topic=f"{self.root}/bridge",
            device=self.bridge_device(bridge.version),
            availability=own,
            bridge_availability=own,
        )

    def account_target(self, account: AccountStatus, bridge_version: str) -> Target:
        own = (self.status_topic,)
        return Target(
            object_id=f"account_{account.user_id}",
            state_topic=f"{self.root}/account/{account.user_id}",
            device=self.bridge_device(bridge_version),
            availability=own,
            bridge_availability=own,
        )

    def device_target(self, view: DeviceView) -> Target:
        d = view.device
        device: dict[str, JsonValue] = {
            "identifiers": [f"{self.instance_id}_{view.sid}"],
            "name": view.name,
            "manufacturer": MANUFACTURER,
            "model": model_name(d),
            "serial_number": d.serial,
            "via_device": self.bridge_identifier,
        }
        if d.firmware:
            device["sw_version"] = d.firmware
        return Target(
            object_id=view.sid,
            state_topic=self.device_root(d.serial),
            device=device,
            availability=(self.status_topic, self.availability_topic(d.serial)),
            bridge_availability=(self.status_topic,),
        )

    def session_target(self, view: DeviceView, device_target: Target) -> Target:
        return Target(
            object_id=f"{view.sid}_session",
            state_topic=self.session_topic(view.device.serial),
            device=device_target.device,
            availability=device_target.availability,
            bridge_availability=device_target.bridge_availability,
        )

    def probe_target(self, view: ProbeView, device_target: Target) -> Target:
        return Target(
            object_id=f"{view.device.sid}_p{view.probe.channel}",
            state_topic=self.probe_topic(view.device.device.serial, view.probe.channel),
            device=device_target.device,
            availability=device_target.availability,
            bridge_availability=device_target.bridge_availability,
        )


# --------------------------------------------------------------------------- payloads


@dataclass(frozen=True, kw_only=True)
class EntityConfig:
    """One discovery config: its topic, its entity's unique id and its payload.

    Only the payload's JSON text is kept: a bridge holds thousands of configs, and
    their dicts (each with its own copy of the HA device block) were most of its
    discovery memory. ``payload`` parses the text again, for tests and tools.
    """

    component: Component
    topic: str
    unique_id: str | None  # device triggers have none
    text: str  # the payload as published: compact JSON

    @classmethod
    def of(
        cls,
        component: Component,
        topic: str,
        unique_id: str | None,
        payload: Mapping[str, JsonValue],
    ) -> EntityConfig:
        return cls(component=component, topic=topic, unique_id=unique_id, text=dumps(payload))

    @property
    def payload(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.text)
        return loaded

    def json(self) -> str:
        return self.text


@dataclass(frozen=True, kw_only=True)
class State:
    """One state message: a JSON object, or a plain word on an availability topic."""

    topic: str
    payload: str
    availability: bool = False  # an online/offline word, not a JSON state


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(value: JsonValue) -> str:
    """Compact, stable JSON (key order as built), UTF-8 (``°F`` stays readable)."""
    return _ENCODER.encode(value)


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


class ConfigMemo:
    """Each entity's last config, reused while what it is built from is unchanged.

    A config depends on its subject only through the row's name and unit, and the
    target (a row's attribute keys are declared, not computed): the publisher
    rebuilds every subject at every poll, and this keeps that from rebuilding (and
    re-encoding) unchanged configs.
    """

    def __init__(self) -> None:
        self._configs: dict[tuple[int, str], tuple[Any, EntityConfig]] = {}
        # serial -> (what the device's configs were built from, the configs)
        self._devices: dict[str, tuple[Any, tuple[EntityConfig, ...]]] = {}

    def config(
        self, naming: Naming, row: EntityDescription[C], ctx: C, target: Target
    ) -> EntityConfig:
        inputs = (naming, row, row.name_for(ctx), row.unit_for(ctx), target)
        key = (id(row), target.object_id)
        known = self._configs.get(key)
        if known is not None and known[0] == inputs:
            return known[1]
        config = entity_config(naming, row, ctx, target)
        self._configs[key] = (inputs, config)
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

    def clear(self) -> None:
        """Forget everything (when subjects went away, so that their configs do not linger)."""
        self._configs.clear()
        self._devices.clear()

    def __len__(self) -> int:
        return len(self._configs)


def scope_configs(
    naming: Naming, scope: Scope[C], ctx: C, target: Target, memo: ConfigMemo | None = None
) -> list[EntityConfig]:
    build = memo.config if memo is not None else entity_config
    return [build(naming, row, ctx, target) for row in scope.entities if row.exists_fn(ctx)]


def scope_state(scope: Scope[C], ctx: C, target: Target) -> State | None:
    """The subject's JSON state: every existing row's value and attributes, plus extras."""
    values: dict[str, JsonValue] = {}
    for row in scope.entities:
        if not row.exists_fn(ctx) or row.source is not Source.STATE:
            continue
        if row.value_fn is not None:
            values[row.key] = row.value_fn(ctx)
        if row.attributes_fn is not None:
            given = row.attributes_fn(ctx)
            for key in row.attributes:
                values[key] = given.get(key)
    if scope.extras_fn is not None:
        for key, value in scope.extras_fn(ctx).items():
            values.setdefault(key, value)
    return State(topic=target.state_topic, payload=dumps(values)) if values else None


# --------------------------------------------------------------------------- whole subjects


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
    states += _some(scope_state(table.session, view, session))
    for pv, pt in zip(probes, probe_targets, strict=True):
        states += _some(scope_state(table.probe, pv, pt))
    return Publication(configs=configs, states=tuple(states))


def session_state(naming: Naming, view: DeviceView, table: Table = TABLE) -> State | None:
    """Only the state of a device's session entities (what changes after a poll's database part)."""
    return scope_state(table.session, view, naming.session_target(view, naming.device_target(view)))


def _channel(probe: Probe) -> int:
    return probe.channel


def _some(state: State | None) -> Sequence[State]:
    return [state] if state is not None else []
