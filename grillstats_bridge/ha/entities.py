"""Home Assistant discovery: the entity table, and the payloads and state values it gives.

Pure: no I/O. One table (:data:`TABLE`) describes every kind of entity the bridge
publishes, one row each; the same row gives the discovery payload (what HA is told)
and the value in the subject's JSON state (what HA then reads), so the two cannot
drift apart. Rows are grouped by *scope*, the thing they describe: the bridge, a
linked account, a ThermoWorks device, a probe. Later features add rows (or a scope
of their own, e.g. per alert) and get topics, unique ids, device, availability and
origin for free.

Ids and topics derive from stable ids only: the instance id, the serial (as
``ha.ids.device_id`` writes it: ``[A-Za-z0-9_-]``, never the same for two serials),
the channel number, the account's user id — never a display name, so renaming a
probe renames the entity instead of making a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property

from grillstats_bridge import __version__
from grillstats_bridge.domain import (
    Device,
    FanState,
    FiringEvent,
    Measurement,
    Probe,
    Unit,
    clean_float,
    convert_temperature,
)
from grillstats_bridge.ha.cook_entities import (
    COOK_EVENT_TYPES,
    DEVICE_COOK_STATE,
    PROBE_COOK,
    ProbeCook,
)
from grillstats_bridge.ha.ids import device_id
from grillstats_bridge.ha.rows import C as C
from grillstats_bridge.ha.rows import Component as Component
from grillstats_bridge.ha.rows import EntityDescription as EntityDescription
from grillstats_bridge.ha.rows import JsonValue as JsonValue
from grillstats_bridge.ha.rows import Scope as Scope
from grillstats_bridge.ha.rows import Source as Source

ONLINE = "online"
OFFLINE = "offline"
ORIGIN = {"name": "Grill Stats Bridge", "sw_version": __version__}
MANUFACTURER = "ThermoWorks"


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
    accounts_failing: int = 0  # backing off, parked, or their credentials refused
    cloud_requests_hour: int = 0  # requests to the cloud in the last hour
    rejected_readings: int = 0  # readings the database refused for good since the start
    log_level: str = "INFO"  # the root logger's, which the Log level select sets
    # The live bridge processes sharing the database, with the accounts each holds a lease
    # on (PostgreSQL; empty on SQLite, where the one process holds every account).
    processes: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, kw_only=True)
class ProbeAlerts:
    """A probe's alerts as HA shows them: the target and range its numbers set, whether one is
    active."""

    channel: int
    target: Measurement | None = None  # in the alert's unit; shown in the probe's
    active: bool = False  # an alert fired and has not re-armed
    low: Measurement | None = None  # the range alert's sides, or one set alone from HA
    high: Measurement | None = None
    method: str = "auto"  # the cook method declared for the probe (ha.cook_entities)


@dataclass(frozen=True, kw_only=True)
class CurrentSession:
    """A device's running cooking session, as its session entities show it."""

    session_id: int | None
    name: str
    session_type: str  # auto, manual
    start: datetime
    duration: timedelta  # as of when the bridge last looked at the session, whole minutes
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
    cook: tuple[ProbeCook, ...] = ()  # only probes with a target and an estimate

    @classmethod
    def of(
        cls,
        device: Device,
        now: datetime,
        nickname: str | None = None,
        session: CurrentSession | None = None,
        alerts: tuple[ProbeAlerts, ...] = (),
        cook: tuple[ProbeCook, ...] = (),
    ) -> DeviceView:
        """Name: the user's nickname, else the cloud label, else model and serial."""
        name = nickname or device.label or f"{model_name(device)} {device.serial}"
        online = device.is_online(now)
        return cls(
            device=device, name=name, online=online, session=session, alerts=alerts, cook=cook
        )

    @property
    def sid(self) -> str:
        return device_id(self.device.serial)


@dataclass(frozen=True, kw_only=True)
class ProbeView:
    device: DeviceView
    probe: Probe

    @property
    def label(self) -> str:
        return self.probe.label or f"Probe {self.probe.channel}"

    # Cached: a dozen rows of the probe's state read them (the view is frozen).
    @cached_property
    def alerts(self) -> ProbeAlerts:
        channel = self.probe.channel
        return next(
            (a for a in self.device.alerts if a.channel == channel), ProbeAlerts(channel=channel)
        )

    @cached_property
    def cook(self) -> ProbeCook | None:
        return next((c for c in self.device.cook if c.channel == self.probe.channel), None)


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
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")  # logging.level's choices
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
            key="accounts_failing",
            component=Component.SENSOR,
            name="Accounts failing",
            value_fn=lambda b: b.accounts_failing,
            state_class=MEASUREMENT,
            entity_category=DIAGNOSTIC,
            icon="mdi:account-alert",
        ),
        EntityDescription(
            key="cloud_requests_hour",
            component=Component.SENSOR,
            name="Cloud requests in the last hour",
            value_fn=lambda b: b.cloud_requests_hour,
            state_class=MEASUREMENT,
            entity_category=DIAGNOSTIC,
            icon="mdi:cloud-sync",
        ),
        EntityDescription(
            key="rejected_readings",
            component=Component.SENSOR,
            name="Rejected rows",
            value_fn=lambda b: b.rejected_readings,
            state_class="total_increasing",
            entity_category=DIAGNOSTIC,
            icon="mdi:database-alert",
        ),
        EntityDescription(
            key="processes",
            component=Component.SENSOR,
            name="Processes",
            value_fn=lambda b: len(b.processes) or 1,
            state_class=MEASUREMENT,
            entity_category=DIAGNOSTIC,
            icon="mdi:server",
            attributes=("accounts_by_process",),
            attributes_fn=lambda b: {"accounts_by_process": dict(b.processes)},
        ),
        EntityDescription(
            key="version",
            component=Component.SENSOR,
            name="Version",
            value_fn=lambda b: b.version,
            entity_category=DIAGNOSTIC,
            icon="mdi:tag",
        ),
        EntityDescription(
            key="poll",
            component=Component.BUTTON,
            name="Poll now",
            source=Source.NONE,
            command=True,
            icon="mdi:refresh",
        ),
        EntityDescription(
            key="log_level",
            component=Component.SELECT,
            name="Log level",
            value_fn=lambda b: b.log_level,
            options=LOG_LEVELS,
            command=True,
            entity_category="config",
            icon="mdi:math-log",
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


# --------------------------------------------------------------------------- alerts
# Per device an event entity for the firings; per temperature probe its target and
# range numbers (commands handled by alerts.entities.AlertControl), an alert-active
# binary sensor and one device trigger per event type.

EVENT_TYPES = tuple(event.value for event in FiringEvent)
# The number's range, in the probe's unit; a target outside it shows as unknown
# (HA logs an error for a state outside the range).
TARGET_MIN = -100.0
TARGET_MAX = 1000.0
TARGET = "target"
RANGE_LOW = "range_low"
RANGE_HIGH = "range_high"
COMMANDS = {TARGET: "target", RANGE_LOW: "range low", RANGE_HIGH: "range high"}


def _is_temperature(view: ProbeView) -> bool:
    return view.probe.unit.is_temperature


def _shown(value: Measurement | None, unit: Unit) -> float | None:
    """A temperature as a number entity shows it: in the probe's unit, within its range."""
    if value is None:
        return None
    shown = round(value.to(unit).value, 1)
    return shown if TARGET_MIN <= shown <= TARGET_MAX else None


def target_value(view: ProbeView) -> float | None:
    """The probe's target in the probe's own unit (an alert set in °F on a °C probe converts)."""
    return _shown(view.alerts.target, view.probe.unit)


def range_value(high: bool) -> Callable[[ProbeView], float | None]:
    """The value_fn of the range low (or high) number, in the probe's unit."""

    def value(view: ProbeView) -> float | None:
        alerts = view.alerts
        return _shown(alerts.high if high else alerts.low, view.probe.unit)

    return value


ALERTS_EVENT: EntityDescription[DeviceView] = EntityDescription(
    key="alerts",
    component=Component.EVENT,
    name="Alerts",
    source=Source.EVENT,
    icon="mdi:bell-ring",
    device_availability=False,  # a firing replayed after the device went offline still shows
    extra={"event_types": [*EVENT_TYPES, *COOK_EVENT_TYPES]},  # cook: ha.cook_entities
)


def _temperature_number(
    key: str, value_fn: Callable[[ProbeView], float | None]
) -> EntityDescription[ProbeView]:
    return EntityDescription(
        key=key,
        component=Component.NUMBER,
        name=lambda p: f"{p.label} {COMMANDS[key]}",
        value_fn=value_fn,
        exists_fn=_is_temperature,
        device_class="temperature",
        unit=lambda p: p.probe.unit.symbol,
        command=True,
        device_availability=False,  # an alert may be set before the device is switched on
        extra={"min": TARGET_MIN, "max": TARGET_MAX, "step": 0.1, "mode": "box"},
    )


PROBE_TARGET = _temperature_number(TARGET, target_value)
PROBE_RANGE_LOW = _temperature_number(RANGE_LOW, range_value(high=False))
PROBE_RANGE_HIGH = _temperature_number(RANGE_HIGH, range_value(high=True))

ALERT_ACTIVE: EntityDescription[ProbeView] = EntityDescription(
    key="alert_active",
    component=Component.BINARY_SENSOR,
    name=lambda p: f"{p.label} alert active",
    value_fn=lambda p: p.alerts.active,
    exists_fn=_is_temperature,
    icon="mdi:bell-ring",
)


def _trigger(event: FiringEvent) -> EntityDescription[ProbeView]:
    return EntityDescription(
        key=f"on_{event.value}",
        component=Component.DEVICE_AUTOMATION,
        name=lambda p: f"probe_{p.probe.channel}",  # the trigger's subtype
        exists_fn=_is_temperature,
        source=Source.EVENT,
        extra={
            "type": event.value,
            "payload": event.value,
            "value_template": "{{ value_json.event_type }}",
            "qos": 1,
        },
    )


PROBE_TRIGGERS = tuple(_trigger(event) for event in FiringEvent)


DEVICE_WITH_ALERTS = DEVICE.with_entities(ALERTS_EVENT, DEVICE_COOK_STATE)
PROBE_WITH_ALERTS = PROBE.with_entities(
    PROBE_TARGET, PROBE_RANGE_LOW, PROBE_RANGE_HIGH, ALERT_ACTIVE, *PROBE_TRIGGERS, *PROBE_COOK
)


@dataclass(frozen=True, kw_only=True)
class Table:
    """Every scope; the publisher works from one of these (tests may pass their own)."""

    bridge: Scope[BridgeStatus] = BRIDGE
    account: Scope[AccountStatus] = ACCOUNT
    device: Scope[DeviceView] = DEVICE_WITH_ALERTS
    probe: Scope[ProbeView] = PROBE_WITH_ALERTS
    session: Scope[DeviceView] = SESSION


TABLE = Table()
