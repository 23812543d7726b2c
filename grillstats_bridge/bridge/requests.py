"""Requests over MQTT, as zigbee2mqtt takes them: ``<root>/bridge/request/<action>``
with a JSON object (an optional ``transaction`` is echoed), answered on
``<root>/bridge/response/<action>`` with ``{"status": "ok", "data": ...}`` or
``{"status": "error", "error": "one line"}`` (QoS 1, not retained).

Actions: ``health``, ``poll`` (every account polled now), ``devices/sync`` (the same),
``session/start`` ``{"device", "name"?}``, ``session/end`` ``{"device"}`` or
``{"id"}``, ``alerts/list`` ``{"user"?}``, ``alerts/add`` ``{"user", "device",
"probe", "type", ...}`` (``alert add``'s checks) and ``alerts/remove`` ``{"id"}``.
Like Home Assistant's commands, requests run on the pipeline thread; anyone who may
publish to the broker may send them (secure the broker: docs/mqtt.md). A retained
``<root>/bridge/info`` says the version, how many users, linked accounts and devices
there are, and the configuration with its secrets hidden. The bridge device's "Poll
now" button and "Log level" select in Home Assistant are handled here too.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from grillstats_bridge import __version__
from grillstats_bridge.alerts import rules as alert_rules
from grillstats_bridge.config import redacted
from grillstats_bridge.errors import UsageError
from grillstats_bridge.ha.commands import shown
from grillstats_bridge.ha.entities import LOG_LEVELS
from grillstats_bridge.mqtt.messages import InboundMessage
from grillstats_bridge.sessions.model import SessionStatus
from grillstats_bridge.store import leases
from grillstats_bridge.store.devices import device_serial
from grillstats_bridge.store.models import Device, GrillingSession, ThermoWorksCredentials, User
from grillstats_bridge.web import data

if TYPE_CHECKING:
    from grillstats_bridge.bridge.daemon import Bridge

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 4096
_ACTION = re.compile(r"^[a-z][a-z_]{0,30}(/[a-z][a-z_]{0,30})?$")
Body = dict[str, Any]


class BridgeRequests:
    """The request/response topics of one bridge; handlers run on its pipeline thread."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.root = bridge.publisher.naming.root
        self._info = ""  # the bridge/info payload last published
        self.actions: dict[str, Callable[[Body], Any]] = {
            "health": lambda body: bridge.health_report()[1],
            "poll": self._poll,
            "devices/sync": self._poll,
            "session/start": self._session_start,
            "session/end": self._session_end,
            "alerts/list": self._alerts_list,
            "alerts/add": self._alerts_add,
            "alerts/remove": self._alerts_remove,
        }
        bridge.on_command(f"{self.root}/bridge/request/#", self.handle)
        # the bridge device's "Poll now" button and "Log level" select in Home Assistant
        bridge.on_command(f"{self.root}/bridge/poll/set", self._poll_pressed)
        bridge.on_command(f"{self.root}/bridge/log_level/set", self._log_level_selected)

    @property
    def info_topic(self) -> str:
        return f"{self.root}/bridge/info"

    # ------------------------------------------------------------------ the exchange

    def handle(self, message: InboundMessage) -> None:
        action = message.topic.removeprefix(f"{self.root}/bridge/request/")
        if not _ACTION.match(action):
            log.warning("MQTT request on %s ignored: not an action", shown(message.topic))
            return
        if message.retain:  # a retained request would run again at every restart
            log.warning("MQTT request %s ignored: retained", action)
            return
        transaction: Any = None
        try:
            body = _parse(message.payload)
            transaction = body.pop("transaction", None)
            if not isinstance(transaction, str | int | type(None)) or len(str(transaction)) > 64:
                transaction = None
                raise UsageError("transaction: a string or a number of at most 64 characters")
            handler = self.actions.get(action)
            if handler is None:
                raise UsageError(f"unknown action {action!r} (known: {', '.join(self.actions)})")
            answer: Body = {"status": "ok", "data": handler(body)}
        except UsageError as exc:
            log.warning("MQTT request %s refused: %s", action, exc)
            answer = {"status": "error", "error": str(exc)}
        except SQLAlchemyError as exc:
            log.error("MQTT request %s failed: database %s", action, type(exc).__name__)
            answer = {"status": "error", "error": "the database is not available"}
        except Exception:  # a bug: the requester still gets its answer
            log.exception("MQTT request %s failed", action)
            answer = {"status": "error", "error": "internal error (see the bridge's log)"}
        if transaction is not None:
            answer["transaction"] = transaction
        payload = json.dumps(answer, default=str, separators=(",", ":"))
        self.bridge.mqtt.publish_event(f"{self.root}/bridge/response/{action}", payload)

    def publish_info(self) -> None:
        """The retained ``bridge/info``: version, counts, the configuration (secrets hidden);
        with account leases, the live processes and the accounts each holds.

        Of several processes only the one that writes the bridge's device publishes it
        (the others would overwrite it with their own view); it is sent again when
        what it says changed (the lease ticks call this).
        """
        bridge = self.bridge
        if not bridge.publisher.writes_bridge():
            return
        keeper = bridge.leases
        try:
            with bridge.database.transaction() as db:
                counts: dict[str, Any] = {
                    "users": db.scalar(sa.select(sa.func.count(User.id))),
                    "accounts": db.scalar(sa.select(sa.func.count(ThermoWorksCredentials.id))),
                    "devices": db.scalar(
                        sa.select(sa.func.count(Device.id)).where(Device.is_active.is_not(False))
                    ),
                }
                if keeper.enabled:
                    now = keeper.clock()
                    counts["processes"] = leases.holdings(db, since=now - keeper.validity, now=now)
        except SQLAlchemyError as exc:
            log.warning("bridge/info not published: database %s", type(exc).__name__)
            return
        info = {"version": __version__, **counts, "config": redacted(bridge.config)}
        payload = json.dumps(info, default=str, separators=(",", ":"))
        if payload != self._info:
            self._info = payload
            bridge.mqtt.publish_state(self.info_topic, payload, qos=1, retain=True)

    # ------------------------------------------------------------------ Home Assistant

    def _poll_pressed(self, message: InboundMessage) -> None:
        if message.retain or not message.payload:
            log.warning("Poll now: retained or empty message ignored")
            return
        log.info("Poll now pressed: %d account(s) polled now", self._poll({})["accounts"])

    def _log_level_selected(self, message: InboundMessage) -> None:
        level = message.payload[:16].decode("ascii", errors="replace").strip().upper()
        if message.retain or level not in LOG_LEVELS:
            log.warning("Log level: %s ignored (one of %s)", shown(message.payload), LOG_LEVELS)
            return
        logging.getLogger().setLevel(level)
        log.warning("log level set to %s from Home Assistant", level)  # seen at any level
        self.bridge.publisher.publish_bridge_state(self.bridge.bridge_status())

    # ------------------------------------------------------------------ the actions

    def _poll(self, body: Body) -> Body:
        """Every linked account due now (the schedule loop takes them at once)."""
        return {"accounts": self.bridge.poll_now()}

    def _session_start(self, body: Body) -> Body:
        serial = _text(body, "device")
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise UsageError("name: a string")
        bridge = self.bridge
        with bridge.database.transaction() as db:
            changes = bridge.sessions.start(db, device_serial(db, serial), bridge.clock.now(), name)
        bridge.session_mqtt.changed(changes)
        last = changes[-1].session
        return {"id": last.session_id, "device": last.serial, "name": last.name}

    def _session_end(self, body: Body) -> Body:
        bridge = self.bridge
        with bridge.database.transaction() as db:
            if "id" in body:
                session_id = _int(body, "id")
            else:
                serial = device_serial(db, _text(body, "device"))
                found = db.scalar(
                    sa.select(GrillingSession.id).where(
                        GrillingSession.device_id == serial,
                        GrillingSession.status == SessionStatus.ACTIVE.value,
                    )
                )
                if found is None:
                    raise UsageError(f"no active session on {serial}")
                session_id = found
            changes = bridge.sessions.end(db, session_id, bridge.clock.now())
        bridge.session_mqtt.changed(changes)
        return {"id": session_id}

    def _alerts_list(self, body: Body) -> Body:
        user = body.get("user")
        if user is not None and not isinstance(user, str):
            raise UsageError("user: an e-mail address")
        with self.bridge.database.transaction() as db:
            return {"alerts": [data.alert_dict(a) for a in alert_rules.list_alerts(db, user)]}

    def _alerts_add(self, body: Body) -> Body:
        fields = {k: "" if v is None else str(v) for k, v in body.items()}
        with self.bridge.database.transaction() as db:
            alert = alert_rules.add_alert(
                db,
                _text(body, "user"),
                serial=_text(body, "device"),
                probe=_int(body, "probe"),
                kind=_text(body, "type"),
                **data.alert_values(fields),
            )
            return data.alert_dict(alert)

    def _alerts_remove(self, body: Body) -> Body:
        with self.bridge.database.transaction() as db:
            return {"id": alert_rules.remove_alert(db, _int(body, "id")).id}


def _parse(payload: bytes) -> Body:
    if len(payload) > MAX_REQUEST_BYTES:
        raise UsageError(f"the request is over {MAX_REQUEST_BYTES} bytes")
    if not payload.strip():
        return {}
    try:
        body = json.loads(payload)
    except ValueError:
        raise UsageError("the request is not JSON") from None
    if not isinstance(body, dict):
        raise UsageError("the request must be a JSON object")
    return body


def _text(body: Body, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{key}: required, a string")
    return value.strip()


def _int(body: Body, key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{key}: required, a whole number")
    return value
