"""Cooking sessions in Home Assistant: the session entities' state, the buttons, the events.

The entities themselves are rows of the discovery table (``discovery.SESSION``);
this module feeds them and serves them, on the daemon's pipeline thread:

* after every poll, every tick and every command, each device's running session
  goes to the publisher (:meth:`SessionMqtt.changed`), which republishes the
  session state of the devices whose session changed (the duration moves too);
* "Start session" / "End session" presses arrive on
  ``<device root>/session/start/set`` and ``.../end/set`` and go to the session
  service, like ``session start`` and ``session end`` on the command line;
* ``session_started`` events go out as they happen (best effort: lost while the
  broker is away, the state says the same); ``session_ended`` events go through an
  outbox, the ended sessions' rows whose ``end_published_at`` is empty, so that
  none is lost while the broker is down and none is sent twice once it
  acknowledged it. They go out in the order the sessions ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from grillstats_bridge.domain import Unit, clean_float
from grillstats_bridge.errors import UsageError
from grillstats_bridge.ha.commands import parse_command, shown
from grillstats_bridge.ha.entities import CurrentSession, JsonValue
from grillstats_bridge.ha.ids import device_id
from grillstats_bridge.ha.publisher import Publisher
from grillstats_bridge.mqtt.messages import Delivery, InboundMessage
from grillstats_bridge.sessions.model import (
    ChangeKind,
    SessionChange,
    SessionSnapshot,
    SessionStatus,
)
from grillstats_bridge.sessions.names import format_duration
from grillstats_bridge.sessions.service import SessionService
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import Device, GrillingSession

log = logging.getLogger(__name__)
_MINUTE = timedelta(minutes=1)

STARTED = "session_started"
ENDED = "session_ended"
_ENDED_STATUSES = (SessionStatus.COMPLETED.value, SessionStatus.CANCELLED.value)

EndedEvent = tuple[str, dict[str, JsonValue]]  # serial, session_ended payload
OnCommand = Callable[[str, Callable[[InboundMessage], None]], None]


def current_session(snapshot: SessionSnapshot, now: datetime) -> CurrentSession:
    """A running session as its entities show it, its duration as of ``now`` in whole
    minutes (what the duration entity shows): a session whose figures did not move
    compares equal until the next minute, and is not built again."""
    return CurrentSession(
        session_id=snapshot.session_id,
        name=snapshot.name,
        session_type=snapshot.session_type.value,
        start=snapshot.start,
        duration=_MINUTE * (snapshot.duration(now) // _MINUTE),
        unit=snapshot.unit,
        minimum=snapshot.minimum,
        maximum=snapshot.maximum,
        average=snapshot.average,
    )


def event_payload(
    event_type: str,
    *,
    session_id: int | None,
    serial: str,
    name: str | None,
    session_type: str | None,
    status: str | None,
    start: datetime,
    end: datetime | None,
    now: datetime,
    unit: str | None,
    minimum: float | None,
    maximum: float | None,
    average: float | None,
    end_reason: str | None,
) -> dict[str, JsonValue]:
    """A session event: ``event_type`` first, then the session's summary (HA's attributes)."""
    duration = max((end or now) - start, timedelta(0))
    symbol = Unit(unit).symbol if unit else None
    return {
        "event_type": event_type,
        # stable across re-sends (delivery is at least once): drop a repeat by this id
        "event_id": None
        if session_id is None
        else f"session-{session_id}-{event_type.removeprefix('session_')}",
        "session_id": session_id,
        "device": serial,
        "name": name,
        "type": session_type,
        "status": status,
        "start": start.isoformat(),
        "end": end.isoformat() if end is not None else None,
        "duration_s": round(duration.total_seconds()),
        "duration": format_duration(duration),
        "min_temperature": _round(minimum),
        "max_temperature": _round(maximum),
        "avg_temperature": _round(average),
        "unit": symbol,
        "end_reason": end_reason,
    }


def started_payload(snapshot: SessionSnapshot, now: datetime) -> dict[str, JsonValue]:
    return event_payload(
        STARTED,
        session_id=snapshot.session_id,
        serial=snapshot.serial,
        name=snapshot.name,
        session_type=snapshot.session_type.value,
        status=snapshot.status.value,
        start=snapshot.start,
        end=snapshot.end,
        now=now,
        unit=snapshot.unit.value if snapshot.unit else None,
        minimum=snapshot.minimum,
        maximum=snapshot.maximum,
        average=snapshot.average,
        end_reason=None,
    )


def ended_payload(row: GrillingSession, now: datetime) -> dict[str, JsonValue]:
    """The ``session_ended`` event of a stored session (completed or cancelled)."""
    return event_payload(
        ENDED,
        session_id=row.id,
        serial=row.device_id,
        name=row.name,
        session_type=row.session_type,
        status=row.status,
        start=row.start_time,
        end=row.end_time,
        now=now,
        unit=row.temperature_unit,
        minimum=row.min_temperature,
        maximum=row.max_temperature,
        average=row.avg_temperature,
        end_reason=row.end_reason,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else clean_float(value)


def pending_ended(
    db: Session, limit: int, users: Collection[int] | None = None
) -> list[GrillingSession]:
    """Ended sessions whose event the broker has not acknowledged, in the order they ended
    (``users``: only theirs, the accounts this bridge process holds)."""
    query = (
        sa.select(GrillingSession)
        .where(
            GrillingSession.end_published_at.is_(None),
            GrillingSession.status.in_(_ENDED_STATUSES),
        )
        .order_by(GrillingSession.end_time, GrillingSession.id)
        .limit(limit)
    )
    if users is not None:
        query = query.where(GrillingSession.user_id.in_(sorted(users)))
    # No row lock (see AlertService.pending): one bridge drains a database.
    return list(db.scalars(query))


def mark_ended_published(db: Session, session_ids: Sequence[int], at: datetime) -> int:
    """Record that the broker acknowledged these sessions' ``session_ended`` events."""
    if not session_ids:
        return 0
    result = db.execute(
        sa.update(GrillingSession)
        .where(GrillingSession.id.in_(sorted(set(session_ids))))
        .where(GrillingSession.end_published_at.is_(None))
        .values(end_published_at=at)
    )
    return int(getattr(result, "rowcount", 0) or 0)


class SessionMqtt:
    """The daemon's sessions <-> MQTT wiring; every method runs on the pipeline thread."""

    def __init__(
        self,
        *,
        database: Database,
        service: SessionService,
        publisher: Publisher,
        clock: Callable[[], datetime],
        on_ended: Callable[[], None],
        accounts: Callable[[], Collection[int] | None] = lambda: None,
    ) -> None:
        self.accounts = accounts  # whose ended sessions this process publishes (None: all)
        self.database = database
        self.service = service
        self.publisher = publisher
        self.clock = clock
        self.on_ended = on_ended  # a session ended: its event waits in the daemon's outbox

    def subscribe(self, on_command: OnCommand) -> None:
        """Listen to every device's buttons (one wildcard subscription each)."""
        naming = self.publisher.naming
        on_command(naming.command_filter("session/start/set"), self.start_pressed)
        on_command(naming.command_filter("session/end/set"), self.end_pressed)

    # ------------------------------------------------------------------ state and events

    def changed(self, changes: Sequence[SessionChange]) -> None:
        """After the tracker ran: the running sessions' state, new sessions' events."""
        now = self.clock()
        running = {
            s.serial: current_session(s, now)
            for s in self.service.tracker.active_sessions(probes=False)
        }
        self.publisher.publish_sessions(running)
        ended = False
        for change in changes:
            if change.kind is ChangeKind.STARTED:
                self.publisher.publish_session_event(
                    change.serial, started_payload(change.session, now)
                )
            elif change.kind in (ChangeKind.ENDED, ChangeKind.CANCELLED):
                ended = True
        if ended:
            self.on_ended()

    # ------------------------------------------------------------------ the outbox's parts

    def pending_events(self, db: Session, limit: int) -> list[tuple[int, EndedEvent]]:
        """Ended sessions whose event waits, as (session id, (serial, payload)), oldest first."""
        now = self.clock()
        rows = pending_ended(db, limit, self.accounts())
        return [(r.id, (r.device_id, ended_payload(r, now))) for r in rows]

    def send_event(self, event: EndedEvent, on_done: Callable[[Delivery], None]) -> Delivery:
        """One ``session_ended`` event on its device's session event topic."""
        serial, payload = event
        return self.publisher.publish_session_event(serial, payload, on_done=on_done)

    # ------------------------------------------------------------------ the buttons

    def start_pressed(self, message: InboundMessage) -> None:
        """ "Start session": a manual session (an automatic one running becomes manual)."""
        if (found := self._command_serial(message, "Start session")) is None:
            return
        serial, name = found
        try:
            with self.database.transaction() as db:
                changes = self.service.start(db, serial, self.clock(), name)
        except UsageError as exc:
            log.warning("Start session on %s from MQTT ignored: %s", serial, exc)
            return
        except SQLAlchemyError as exc:
            log.error("Start session on %s failed: database %s", serial, type(exc).__name__)
            return
        last = changes[-1].session if changes else None
        log.info(
            "session started from MQTT on %s: %s (%s)",
            serial,
            last.name if last else "?",
            last.session_id if last else "?",
        )
        self.changed(changes)

    def end_pressed(self, message: InboundMessage) -> None:
        """ "End session": ends the device's active session (automatic or manual) now."""
        if (found := self._command_serial(message, "End session")) is None:
            return
        serial = found[0]
        try:
            with self.database.transaction() as db:
                session_id = db.scalar(
                    sa.select(GrillingSession.id).where(
                        GrillingSession.device_id == serial,
                        GrillingSession.status == SessionStatus.ACTIVE.value,
                    )
                )
                if session_id is None:
                    log.info("End session on %s from MQTT: no active session to end", serial)
                    return
                changes = self.service.end(db, session_id, self.clock())
        except UsageError as exc:
            log.warning("End session on %s from MQTT ignored: %s", serial, exc)
            return
        except SQLAlchemyError as exc:
            log.error("End session on %s failed: database %s", serial, type(exc).__name__)
            return
        log.info("session %d ended from MQTT on %s", session_id, serial)
        self.changed(changes)

    def _command_serial(self, message: InboundMessage, what: str) -> tuple[str, str | None] | None:
        """The device a button belongs to (its topic names the device id) and the session
        name the press carries, or None."""
        if message.retain or not message.payload:
            # A retained press would start or end a session at every restart; an empty
            # payload is someone clearing such a retained message.
            log.warning("%s: retained or empty message on %s ignored", what, shown(message.topic))
            return None
        try:
            owner, root = self.publisher.naming.command_root(message.topic)  # per-user topics
            command = parse_command(root, message.topic, message.payload)
        except ValueError as exc:  # CommandError among them
            log.warning("%s: ignored a press: %s", what, exc)
            return None
        if command is None or command.topic.channel is not None:
            log.warning("%s: ignored a press on %s", what, shown(message.topic))
            return None
        sid = command.topic.sid
        try:
            with self.database.session() as db:
                found = db.execute(sa.select(Device.device_id, Device.user_id)).all()
                serials = [s for s, user in found if device_id(s) == sid]
                theirs = [s for s, user in found if device_id(s) == sid and user == owner]
                users = {user for s, user in found if device_id(s) == sid}
        except SQLAlchemyError as exc:
            log.error("%s: database %s", what, type(exc).__name__)
            return None
        if len(serials) == 1 and (held := self.accounts()) is not None and not users & set(held):
            # Several processes: the one holding the device's account answers the press.
            log.debug("%s on %s: another process holds its account", what, shown(message.topic))
            return None
        if len(serials) != 1:
            log.warning(
                "%s on %s: %s",
                what,
                message.topic,
                "no such device" if not serials else "ambiguous device",
            )
            return None
        if owner is not None and not theirs:
            # The broker let this login publish under the user's topics, not on this device.
            log.warning("%s on %s: device %s is not user %d's", what, message.topic, sid, owner)
            return None
        return serials[0], command.name
