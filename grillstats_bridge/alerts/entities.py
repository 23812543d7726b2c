"""Temperature alerts in Home Assistant: the target and range numbers' commands, firings.

The alert rows of the entity table (``ha.entities``, section "alerts"):

* per ThermoWorks device, an ``event`` entity *Alerts* on the device's event topic:
  each firing is one message there (:func:`publish_firing`), its
  ``event_type`` one of ``ha.entities.EVENT_TYPES`` and the rest of it the event's attributes;
* per temperature probe, a ``number`` *<probe> target* in the probe's unit: setting
  it creates or changes the probe's target alert, 0 (or an empty payload) removes it;
* per temperature probe, two ``number`` entities *<probe> range low* and *<probe>
  range high* in the probe's unit: together they create or change the probe's
  range alert (see :meth:`AlertControl.handle`), 0 on either side removes it;
* per temperature probe, a binary sensor *<probe> alert active*: on while one of the
  probe's alerts has fired and not re-armed (a range violated, a target reached);
* per temperature probe and event type, a device trigger. The firing's message is
  repeated on the probe's event topic; each trigger reads that topic and matches the
  ``event_type`` (``value_template``), so it fires only for its probe and kind, and
  an automation gets the whole firing in ``trigger.payload_json``.

:class:`AlertControl` keeps the published targets, ranges and alert-active states
current and applies the numbers' commands; it runs on the daemon's pipeline thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from grillstats_bridge.alerts.engine import AlertRuleError, Firing
from grillstats_bridge.alerts.rules import (
    probe_methods,
    probe_range_alert,
    probe_ranges,
    probe_targets,
    set_probe_method,
    set_probe_range,
    set_probe_target,
)
from grillstats_bridge.alerts.service import AlertService
from grillstats_bridge.domain import Measurement, Unit
from grillstats_bridge.errors import UsageError
from grillstats_bridge.ha.commands import CommandError, parse_payload, parse_topic, shown
from grillstats_bridge.ha.cook_entities import COOK_METHOD, COOK_METHODS
from grillstats_bridge.ha.entities import COMMANDS, RANGE_HIGH, TARGET, JsonValue, ProbeAlerts
from grillstats_bridge.ha.ids import device_id
from grillstats_bridge.ha.payloads import dumps
from grillstats_bridge.ha.publisher import Publisher
from grillstats_bridge.mqtt.messages import Delivery, DeliveryStatus, InboundMessage
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import Device, ProbeRow

log = logging.getLogger(__name__)

Range = tuple[Measurement | None, Measurement | None]  # (low, high); None: not set


def alert_views(
    targets: Mapping[tuple[str, int], Measurement],
    active: Collection[tuple[str, int]],
    ranges: Mapping[tuple[str, int], Range] | None = None,
    methods: Mapping[tuple[str, int], str] | None = None,
) -> dict[str, tuple[ProbeAlerts, ...]]:
    """Serial -> its probes' targets, ranges, alert-active states and declared cook methods
    (for ``publish_alerts``)."""
    ranges = ranges or {}
    methods = methods or {}
    out: dict[str, list[ProbeAlerts]] = {}
    for serial, channel in sorted(set(targets) | set(active) | set(ranges)):
        low, high = ranges.get((serial, channel), (None, None))
        out.setdefault(serial, []).append(
            ProbeAlerts(
                channel=channel,
                target=targets.get((serial, channel)),
                active=(serial, channel) in active,
                low=low,
                high=high,
                method=methods.get((serial, channel), COOK_METHODS[0]),
            )
        )
    return {serial: tuple(probes) for serial, probes in out.items()}


def describe_firing(firing: Firing) -> str:
    """One line for the log and the bridge's recent firings."""
    what = firing.name or firing.kind
    return (
        f"{firing.time:%H:%M:%S} {what} {firing.serial} probe {firing.channel}: "
        f"{firing.event} at {firing.value:.1f} {firing.unit.symbol}"
    )


def publish_firing(
    publisher: Publisher, firing: Firing, *, on_done: Callable[[Delivery], None] | None = None
) -> Delivery:
    """One alert firing on its device's event topic (QoS 1, never retained).

    The same message then goes to the probe's event topic, where the device
    triggers listen; ``on_done`` follows the device's message (the record of it).
    """
    payload: dict[str, JsonValue] = {
        "event_type": firing.event.value,
        # stable across re-sends (delivery is at least once): drop a repeat by this id
        "event_id": None if firing.id is None else f"firing-{firing.id}",
        "firing_id": firing.id,
        "alert_id": firing.alert_id,
        "name": firing.name,
        "alert_type": firing.kind.value,
        "probe": firing.channel,
        "temperature": round(firing.value, 2),
        "unit": firing.unit.symbol,
        "threshold": round(firing.threshold, 2),
        "change": None if firing.change is None else round(firing.change, 2),
        "time": firing.time.isoformat(),
    }
    text = dumps(payload)
    naming = publisher.device_naming(firing.serial, firing.user_id)
    topic = naming.device_event_topic(firing.serial)
    delivery = publisher.client.publish_event(topic, text, on_done=on_done)
    if delivery.status is not DeliveryStatus.REJECTED:
        # Not when refused: the outbox sends the firing again, and the triggers with it.
        publisher.client.publish_event(
            naming.probe_event_topic(firing.serial, firing.channel), text
        )
    return delivery


class AlertControl:
    """Publishes each probe's target, range and alert-active state; applies the numbers.

    A range alert needs both sides: a side set from HA while the probe has no
    active range alert waits here, in memory (shown by its number, forgotten at a
    restart), until the other side is set too. Not thread-safe, like the alert
    service it reads: the daemon calls it on its pipeline thread (:meth:`refresh`
    after each batch of polls, :meth:`handle` through ``Bridge.on_command``).
    """

    def __init__(
        self,
        database: Database,
        alerts: AlertService,
        publisher: Publisher,
        *,
        accounts: Callable[[], Collection[int] | None] = lambda: None,
    ) -> None:
        self.accounts = accounts  # whose probes this process answers for (None: all)
        self.database = database
        self.alerts = alerts
        self.publisher = publisher
        self.naming = publisher.naming
        self.pending: dict[tuple[str, int], Range] = {}  # (serial, channel) -> a side set alone
        # What refresh last built its views from, and those views: after most transactions
        # nothing of it moved, and building the views of every probe again is what costs.
        self._shown: tuple[object, dict[str, tuple[ProbeAlerts, ...]]] | None = None

    @property
    def command_filter(self) -> str:
        """Every probe number's command topic (target, range low, range high)."""
        return self.naming.command_filter("probe/+/+/set")

    def refresh(self) -> None:
        """Publish what the alert engine holds (alerts changed from the CLI included)."""
        try:
            targets = self.alerts.targets()
            ranges = self.alerts.ranges()
            methods = self.alerts.methods()
        except RuntimeError:
            return  # the engine has not loaded yet: nothing is known
        inputs = (targets, self.alerts.active_probes(), self._with_pending(ranges), methods)
        if self._shown is None or self._shown[0] != inputs:
            self._shown = (inputs, alert_views(*inputs))
        # Published either way: the publisher compares, and a command may have shown others.
        self.publisher.publish_alerts(self._shown[1])

    def handle(self, message: InboundMessage) -> None:
        """One command from a probe's number: set, change or remove its target or range alert."""
        try:
            owner, root = self.naming.command_root(message.topic)  # owner: per-user topics
            where = parse_topic(root, message.topic)
        except ValueError as exc:  # CommandError among them
            log.warning("alerts: ignored a command: %s", exc)
            return
        if where is None:
            # The filter's wildcard also matches other modules' probe commands: not ours.
            log.debug("alerts: not an alert command: %s", shown(message.topic))
            return
        sid, channel, key = where.sid, where.channel, where.key
        assert channel is not None  # a probe's topic
        what = COMMANDS.get(key, "cook method")
        if message.retain:
            # A retained command would be applied again at every reconnect, undoing later edits.
            log.warning(
                "alerts: ignored a retained %s command for probe %d of %s "
                "(clear it: mosquitto_pub -r -n -t %s)",
                what,
                channel,
                sid,
                message.topic,
            )
            return
        try:
            command = parse_payload(where, message.payload)
        except CommandError as exc:
            if key == COOK_METHOD:
                log.warning(
                    "alerts: ignored the cook method for probe %d of %s: %s", channel, sid, exc
                )
                return
            alert = "target" if key == TARGET else "range alert"
            log.warning(
                "alerts: ignored the %s for probe %d of %s: %s "
                "(send a temperature, or 0 or nothing to remove the %s)",
                what,
                channel,
                sid,
                exc,
                alert,
            )
            return
        try:
            with self.database.transaction() as session:
                serial, unit, user = _probe_unit(session, sid, channel, owner)
                if (held := self.accounts()) is not None and user not in held:
                    # Several processes: the one holding the device's account answers.
                    log.debug("alerts: %s of %s: another process holds its account", what, sid)
                    return
                value = command.value
                if key == COOK_METHOD:
                    assert command.option is not None  # parse_payload checked it
                    set_probe_method(session, serial, channel, command.option)
                    done = f"set the cook method of probe {channel} of {serial} to {command.option}"
                    pending = self.pending.get((serial, channel))
                elif key == TARGET:
                    done = self._set_target(session, serial, channel, value, unit)
                    pending = self.pending.get((serial, channel))
                else:
                    done, pending = self._set_range_side(
                        session, serial, channel, key == RANGE_HIGH, value, unit
                    )
                targets = probe_targets(session)
                ranges = probe_ranges(session)
                methods = probe_methods(session)
        except (UsageError, AlertRuleError) as exc:
            log.warning("alerts: %s for probe %d of %s not set: %s", what, channel, sid, exc)
            return
        except SQLAlchemyError as exc:
            log.error(
                "alerts: %s for probe %d of %s not set, the database failed (%s); set it again",
                what,
                channel,
                sid,
                type(exc).__name__,
            )
            return
        if pending is None:
            self.pending.pop((serial, channel), None)
        else:
            self.pending[(serial, channel)] = pending
        log.info("alerts: Home Assistant %s", done)
        self.alerts.reload_rules()
        try:
            active = self.alerts.active_probes()
        except RuntimeError:
            active = set()
        views = alert_views(targets, active, self._with_pending(ranges), methods)
        self.publisher.publish_alerts(views)

    def _set_target(
        self, session: Session, serial: str, channel: int, value: float | None, unit: Unit
    ) -> str:
        """Apply a target number's command; what was done (for the log)."""
        alert = set_probe_target(session, serial, channel, value, unit)
        if alert is None or value is None:
            return f"removed the target of probe {channel} of {serial}"
        target = Measurement(value, unit)
        return f"set the target of probe {channel} of {serial} to {target} (alert {alert.id})"

    def _set_range_side(
        self,
        session: Session,
        serial: str,
        channel: int,
        high: bool,
        value: float | None,
        unit: Unit,
    ) -> tuple[str, Range | None]:
        """Apply a range number's command; what was done, and the side left waiting (if any).

        With an active range alert the other side is the alert's; without one it is
        the side set earlier from HA, and with none yet this side waits for it.
        """
        side = "high" if high else "low"
        if value is None:
            set_probe_range(session, serial, channel, None, None, unit)
            return f"removed the range alert of probe {channel} of {serial}", None
        if not unit.is_temperature:
            raise UsageError(f"probe {channel} measures humidity: it has no range alert")
        mine = Measurement(value, unit)
        alert = probe_range_alert(session, serial, channel)
        if (
            alert is not None
            and alert.is_active is not False
            and alert.min_temperature is not None
            and alert.max_temperature is not None
        ):
            alert_unit = Unit.parse(alert.temperature_unit or "F")
            current: Range = (
                Measurement(alert.min_temperature, alert_unit),
                Measurement(alert.max_temperature, alert_unit),
            )
        else:
            current = self.pending.get((serial, channel), (None, None))
        other = current[0] if high else current[1]
        if other is None:
            waiting: Range = (None, mine) if high else (mine, None)
            return (
                f"set the range {side} of probe {channel} of {serial} to {mine}; "
                f"the range alert is created once its {'low' if high else 'high'} is set too"
            ), waiting
        other_value = _in_unit(other, unit)
        low_value, high_value = (other_value, value) if high else (value, other_value)
        made = set_probe_range(session, serial, channel, low_value, high_value, unit)
        assert made is not None  # both sides set, neither 0
        return (
            f"set the range of probe {channel} of {serial} to {low_value:g} to "
            f"{high_value:g} {unit.symbol} (alert {made.id})"
        ), None

    def _with_pending(
        self, ranges: Mapping[tuple[str, int], tuple[Measurement, Measurement]]
    ) -> dict[tuple[str, int], Range]:
        """The ranges to show: the alerts', and the sides waiting where a probe has none."""
        for probe in [p for p in self.pending if p in ranges]:
            del self.pending[probe]  # a range alert came from elsewhere: it wins
        return {**self.pending, **ranges}


def _in_unit(value: Measurement, unit: Unit) -> float:
    """A range side in the probe's unit: converted as its number shows it (0.1 steps)."""
    return value.value if value.unit is unit else round(value.to(unit).value, 1)


def _probe_unit(
    session: Session, sid: str, channel: int, owner: int | None = None
) -> tuple[str, Unit, int]:
    """The serial behind a topic's device id, the probe's unit (what the number shows) and
    the device's user.

    ``owner``: the user whose topics the command came on (per-user topics): the
    device must be theirs, whatever their login may publish on.
    """
    found = session.execute(
        sa.select(Device.device_id, ProbeRow.unit, Device.user_id)
        .join(ProbeRow, ProbeRow.device_id == Device.id)
        .where(ProbeRow.channel == channel)
    ).all()
    matches = [(serial, unit, user) for serial, unit, user in found if device_id(serial) == sid]
    if not matches:
        raise UsageError(f"no device {sid} with a probe {channel}")
    if len(matches) > 1:
        raise UsageError(f"several devices are written {sid} in topics")
    serial, unit, user = matches[0]
    if owner is not None and user != owner:
        raise UsageError(f"device {sid} is not user {owner}'s")
    return serial, Unit.parse(unit), user
