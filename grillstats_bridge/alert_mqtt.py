"""Temperature alerts in Home Assistant: their entities, and the target numbers' commands.

The rows that :func:`with_alerts` adds to the discovery table:

* per ThermoWorks device, an ``event`` entity *Alerts* on the device's event topic:
  each firing is one message there (``Publisher.publish_firing``), its
  ``event_type`` one of :data:`EVENT_TYPES` and the rest of it the event's attributes;
* per temperature probe, a ``number`` *<probe> target* in the probe's unit: setting
  it creates or changes the probe's target alert, 0 (or an empty payload) removes it;
* per temperature probe, a binary sensor *<probe> alert active*: on while one of the
  probe's alerts has fired and not re-armed (a range violated, a target reached);
* per temperature probe and event type, a device trigger. The firing's message is
  repeated on the probe's event topic; each trigger reads that topic and matches the
  ``event_type`` (``value_template``), so it fires only for its probe and kind, and
  an automation gets the whole firing in ``trigger.payload_json``.

:class:`AlertControl` keeps the published targets and alert-active states current
and applies the numbers' commands; it runs on the daemon's pipeline thread.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Collection, Mapping

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from grillstats_bridge.alert_service import AlertService, probe_targets, set_probe_target
from grillstats_bridge.alerts import AlertRuleError, FiringEvent
from grillstats_bridge.db import Database
from grillstats_bridge.discovery import (
    TABLE,
    Component,
    DeviceView,
    EntityDescription,
    ProbeAlerts,
    ProbeView,
    Source,
    Table,
    sanitize,
)
from grillstats_bridge.domain import Measurement, Unit
from grillstats_bridge.errors import UsageError
from grillstats_bridge.models import Device, ProbeRow
from grillstats_bridge.mqtt import InboundMessage
from grillstats_bridge.publisher import Publisher

log = logging.getLogger(__name__)

EVENT_TYPES = tuple(event.value for event in FiringEvent)
# The number's range, in the probe's unit; a target outside it shows as unknown
# (HA logs an error for a state outside the range).
TARGET_MIN = -100.0
TARGET_MAX = 1000.0
CLEAR_WORDS = ("", "none", "null")  # besides 0: what removes the target alert


def _is_temperature(view: ProbeView) -> bool:
    return view.probe.unit.is_temperature


def target_value(view: ProbeView) -> float | None:
    """The probe's target in the probe's own unit (an alert set in °F on a °C probe converts)."""
    target = view.alerts.target
    if target is None:
        return None
    value = round(target.to(view.probe.unit).value, 1)
    return value if TARGET_MIN <= value <= TARGET_MAX else None


ALERTS_EVENT: EntityDescription[DeviceView] = EntityDescription(
    key="alerts",
    component=Component.EVENT,
    name="Alerts",
    source=Source.EVENT,
    icon="mdi:bell-ring",
    device_availability=False,  # a firing replayed after the device went offline still shows
    extra={"event_types": list(EVENT_TYPES)},
)

PROBE_TARGET: EntityDescription[ProbeView] = EntityDescription(
    key="target",
    component=Component.NUMBER,
    name=lambda p: f"{p.label} target",
    value_fn=target_value,
    exists_fn=_is_temperature,
    device_class="temperature",
    unit=lambda p: p.probe.unit.symbol,
    command=True,
    device_availability=False,  # a target may be set before the device is switched on
    extra={"min": TARGET_MIN, "max": TARGET_MAX, "step": 0.1, "mode": "box"},
)

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


def with_alerts(table: Table = TABLE) -> Table:
    """``table`` with the alert rows (what the daemon publishes)."""
    return dataclasses.replace(
        table,
        device=table.device.with_entities(ALERTS_EVENT),
        probe=table.probe.with_entities(PROBE_TARGET, ALERT_ACTIVE, *PROBE_TRIGGERS),
    )


def alert_views(
    targets: Mapping[tuple[str, int], Measurement], active: Collection[tuple[str, int]]
) -> dict[str, tuple[ProbeAlerts, ...]]:
    """Serial -> its probes' targets and alert-active states (what ``publish_alerts`` takes)."""
    out: dict[str, list[ProbeAlerts]] = {}
    for serial, channel in sorted(set(targets) | set(active)):
        out.setdefault(serial, []).append(
            ProbeAlerts(
                channel=channel,
                target=targets.get((serial, channel)),
                active=(serial, channel) in active,
            )
        )
    return {serial: tuple(probes) for serial, probes in out.items()}


def parse_target(payload: bytes) -> float | None:
    """A number entity's command: the target, or None to remove it; ValueError if neither."""
    text = payload.decode("utf-8").strip()  # UnicodeDecodeError is a ValueError
    if text.lower() in CLEAR_WORDS:
        return None
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    if value != 0 and not TARGET_MIN <= value <= TARGET_MAX:
        raise ValueError(f"outside {TARGET_MIN:g} to {TARGET_MAX:g}")
    return None if value == 0 else value


class AlertControl:
    """Publishes each probe's target and alert-active state; applies the target numbers.

    Not thread-safe, like the alert service it reads: the daemon calls it on its
    pipeline thread (:meth:`refresh` after each batch of polls, :meth:`handle` through
    ``Bridge.on_command``).
    """

    def __init__(self, database: Database, alerts: AlertService, publisher: Publisher) -> None:
        self.database = database
        self.alerts = alerts
        self.publisher = publisher
        self.root = publisher.naming.root

    @property
    def command_filter(self) -> str:
        """Every probe's target number's command topic."""
        return f"{self.root}/device/+/probe/+/{PROBE_TARGET.key}/set"

    def refresh(self) -> None:
        """Publish what the alert engine holds (alerts changed from the CLI included)."""
        try:
            targets = self.alerts.targets()
        except RuntimeError:
            return  # the engine has not loaded yet: nothing is known
        self.publisher.publish_alerts(alert_views(targets, self.alerts.active_probes()))

    def handle(self, message: InboundMessage) -> None:
        """One command from a target number: set, change or remove the probe's target alert."""
        where = self._probe_of(message.topic)
        if where is None:
            log.warning("alerts: ignored a command on unexpected topic %s", message.topic)
            return
        sid, channel = where
        if message.retain:
            # A retained command would be applied again at every reconnect, undoing later edits.
            log.warning(
                "alerts: ignored a retained target command for probe %d of %s "
                "(clear it: mosquitto_pub -r -n -t %s)",
                channel,
                sid,
                message.topic,
            )
            return
        try:
            value = parse_target(message.payload)
        except ValueError as exc:
            log.warning(
                "alerts: ignored the target %r for probe %d of %s: %s "
                "(send a temperature, or 0 or nothing to remove the target)",
                message.payload[:40],
                channel,
                sid,
                exc,
            )
            return
        try:
            with self.database.transaction() as session:
                serial, unit = _probe_unit(session, sid, channel)
                alert = set_probe_target(session, serial, channel, value, unit)
                alert_id = alert.id if alert is not None else None
                targets = probe_targets(session)
        except (UsageError, AlertRuleError) as exc:
            log.warning("alerts: target for probe %d of %s not set: %s", channel, sid, exc)
            return
        except SQLAlchemyError as exc:
            log.error(
                "alerts: target for probe %d of %s not set, the database failed (%s); set it again",
                channel,
                sid,
                type(exc).__name__,
            )
            return
        if value is None:
            log.info("alerts: Home Assistant removed the target of probe %d of %s", channel, serial)
        else:
            log.info(
                "alerts: Home Assistant set the target of probe %d of %s to %s (alert %s)",
                channel,
                serial,
                Measurement(value, unit),
                alert_id,
            )
        self.alerts.reload_rules()
        try:
            active = self.alerts.active_probes()
        except RuntimeError:
            active = set()
        self.publisher.publish_alerts(alert_views(targets, active))

    def _probe_of(self, topic: str) -> tuple[str, int] | None:
        """``<root>/device/<sid>/probe/<channel>/target/set`` -> (sid, channel)."""
        prefix = f"{self.root}/"
        if not topic.startswith(prefix):
            return None
        levels = topic[len(prefix) :].split("/")
        if len(levels) != 6 or levels[0] != "device" or levels[2] != "probe":
            return None
        if not levels[3].isdigit():
            return None
        return levels[1], int(levels[3])


def _probe_unit(session: Session, sid: str, channel: int) -> tuple[str, Unit]:
    """The serial behind a sanitised one, and the probe's unit (what the number shows)."""
    found = session.execute(
        sa.select(Device.device_id, ProbeRow.unit)
        .join(ProbeRow, ProbeRow.device_id == Device.id)
        .where(ProbeRow.channel == channel)
    ).all()
    matches = [(serial, unit) for serial, unit in found if sanitize(serial) == sid]
    if not matches:
        raise UsageError(f"no device {sid} with a probe {channel}")
    if len(matches) > 1:
        raise UsageError(f"several devices are written {sid} in topics")
    serial, unit = matches[0]
    return serial, Unit.parse(unit)
