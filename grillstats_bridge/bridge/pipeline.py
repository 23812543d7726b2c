"""What happens to polls in the database: one transaction, every consumer in order.

    polls -> sync devices and probes -> store new readings -> session tracker -> alert engine
          -> cook tracker (the alerts' targets)

The daemon hands over every poll that finished since the last transaction (one
or many accounts'), so a busy bridge pays one transaction for many polls. Each
consumer runs in that transaction, so polls are stored whole or not at all.
When the database is unreachable the polls' readings wait in a bounded buffer
and go through the same consumers, oldest first, in the first transaction that
succeeds; the services put their in-memory state back when a transaction rolls
back, so a replayed poll counts once.

Only a transient failure (the connection lost, a timeout, a lock or serialization
conflict) is an outage. Anything else - a row the database rejects (a data or
integrity error), or a bug - is permanent: the batch is tried again poll by poll,
the polls that still fail are rejected (one error line each, counted in
``rejected_polls`` / ``rejected_readings`` for ``/health``, which turns
"degraded"), and the rest is stored. Adding a consumer is a line in
:meth:`Pipeline._consume` and a field in :class:`Outcome`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from grillstats_bridge.alerts.engine import Firing
from grillstats_bridge.alerts.service import AlertService
from grillstats_bridge.config import CookConfig
from grillstats_bridge.cook.model import CookStep
from grillstats_bridge.cook.service import CookService
from grillstats_bridge.domain import Poll, Reading
from grillstats_bridge.sessions.model import SessionChange
from grillstats_bridge.sessions.service import SessionService
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.devices import DeviceSync, SyncItem, SyncResult
from grillstats_bridge.store.models import Device
from grillstats_bridge.store.readings import ReadingBuffer, write_readings

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What the database part of some polls did (and what is left to publish)."""

    polls: Sequence[Poll]
    stored: int = 0  # readings offered to the readings table
    replayed: int = 0  # buffered readings written first
    syncs: dict[int, SyncResult] = field(default_factory=dict)  # by user id
    nicknames: dict[int, dict[str, str]] = field(default_factory=dict)  # user -> serial -> name
    session_changes: list[SessionChange] = field(default_factory=list)
    firings: list[Firing] = field(default_factory=list)
    cook: list[CookStep] = field(default_factory=list)
    database_ok: bool = True
    error: str | None = None
    rejected: int = 0  # polls (or a replayed buffer) the database refused for good
    seconds: float = 0.0

    def add(self, other: Outcome) -> None:
        """Fold in the outcome of part of the same batch."""
        self.stored += other.stored
        self.replayed += other.replayed
        self.syncs.update(other.syncs)
        self.nicknames.update(other.nicknames)
        self.session_changes += other.session_changes
        self.firings += other.firings
        self.cook += other.cook


@dataclass(frozen=True, slots=True)
class Rejections:
    """What the database refused for good since the start (for ``/health``)."""

    polls: int = 0
    readings: int = 0
    last: str | None = None
    last_at: datetime | None = None


def transient(exc: BaseException) -> bool:
    """A failure that waiting can cure: the connection, a timeout, a lock or a conflict."""
    if isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class Pipeline:
    """The database half of every poll, with the outage buffer."""

    def __init__(
        self,
        database: Database,
        *,
        sessions: SessionService,
        alerts: AlertService,
        buffer: ReadingBuffer,
        cook: CookService | None = None,
    ) -> None:
        self.database = database
        self.sessions = sessions
        self.alerts = alerts
        self.cook = cook or CookService(CookConfig())
        self.buffer = buffer
        self.devices = DeviceSync()  # sync_devices, writing only what changed
        self.database_ok = True
        self.last_error: str | None = None
        self.failures = 0
        self.rejected_polls = 0  # refused for good (a data error, a bug): not stored
        self.rejected_readings = 0
        self.last_rejection: str | None = None
        self.last_rejection_at: datetime | None = None

    def process(self, polls: Sequence[Poll], now: datetime) -> Outcome:
        """Store polls (after anything buffered); never raises for a database outage."""
        outcome = Outcome(polls=polls)
        started = time.perf_counter()
        replay = self.buffer.take()
        try:
            with self.database.transaction() as db:
                self._consume(db, polls, replay, now, outcome)
        except Exception as exc:
            if not transient(exc):
                log.debug("batch refused; trying poll by poll", exc_info=True)
                return self._one_by_one(polls, replay, now, started)
            self._buffer(polls, replay)
            outcome.database_ok = False
            outcome.error = describe(exc)
            self._failed(outcome.error)
        else:
            if not self.database_ok:
                log.warning("database reachable again: %d buffered readings written", len(replay))
            self.database_ok, self.last_error, self.failures = True, None, 0
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _consume(
        self,
        db: Session,
        polls: Sequence[Poll],
        replay: Sequence[Reading],
        now: datetime,
        out: Outcome,
    ) -> None:
        if replay:
            out.replayed = write_readings(db, replay)
            out.session_changes += self.sessions.process(db, replay, now=now)
            out.firings += self.alerts.process(db, replay, now)
        items = [
            SyncItem(poll.user_id, poll.devices, poll.polled_at, complete=poll.malformed == 0)
            for poll in polls
        ]
        for poll, result in zip(polls, self.devices.sync_many(db, items), strict=True):
            out.syncs[poll.user_id] = result
        out.nicknames = _nicknames(db, {p.user_id for p in polls})
        readings = [r for poll in polls for r in poll.readings]
        out.stored = write_readings(db, readings)
        out.session_changes += self.sessions.process_polls(db, polls, now)
        out.firings += self.alerts.process(db, readings, now)
        devices = [d for poll in polls for d in poll.devices]
        batch = [*replay, *readings]
        out.cook.append(self.cook.process(db, batch, devices, self.alerts.targets(), now))

    def rejections(self) -> Rejections:
        return Rejections(
            self.rejected_polls, self.rejected_readings, self.last_rejection, self.last_rejection_at
        )

    def _buffer(self, polls: Sequence[Poll], replay: Sequence[Reading]) -> None:
        self.buffer.put_back(replay)
        for poll in polls:
            self.buffer.extend(poll.readings)

    def _one_by_one(
        self, polls: Sequence[Poll], replay: Sequence[Reading], now: datetime, started: float
    ) -> Outcome:
        """After a permanent failure: each poll (and the replayed buffer) on its own; what
        still fails is rejected, the rest stored; a transient failure meanwhile buffers
        what is left."""
        outcome = Outcome(polls=polls)
        parts: list[tuple[Sequence[Poll], Sequence[Reading]]] = [((p,), ()) for p in polls]
        if replay:
            parts.insert(0, ((), replay))
        for index, (part_polls, part_replay) in enumerate(parts):
            part = Outcome(polls=part_polls)
            try:
                with self.database.transaction() as db:
                    self._consume(db, part_polls, part_replay, now, part)
            except Exception as exc:
                if transient(exc):
                    for rest_polls, rest_replay in parts[index:]:
                        self._buffer(rest_polls, rest_replay)
                    outcome.database_ok = False
                    outcome.error = describe(exc)
                    self._failed(outcome.error)
                    break
                self._reject(part_polls, part_replay, exc, now)
                outcome.rejected += 1
                continue
            outcome.add(part)
        else:
            self.database_ok, self.last_error, self.failures = True, None, 0
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _reject(
        self, polls: Sequence[Poll], replay: Sequence[Reading], exc: BaseException, now: datetime
    ) -> None:
        readings = len(replay) + sum(len(p.readings) for p in polls)
        what = f"account {polls[0].user_id}'s poll" if polls else f"{len(replay)} buffered readings"
        reason = describe(exc)
        self.rejected_polls += 1
        self.rejected_readings += readings
        self.last_rejection, self.last_rejection_at = f"{what}: {reason}", now
        log.error(
            "the database refused %s (%s): its %d readings are not stored; the rest is",
            what,
            reason,
            readings,
        )
        log.debug("refused by the database", exc_info=exc)

    def tick(self, now: datetime) -> list[SessionChange]:
        """Between polls: end sessions whose devices went silent."""
        try:
            with self.database.transaction() as db:
                return self.sessions.tick(db, now)
        except Exception as exc:
            if transient(exc):
                self._failed(describe(exc))
            else:
                log.error("sessions not checked between polls: %s", describe(exc))
                log.debug("session tick failed", exc_info=exc)
            return []

    def _failed(self, error: str) -> None:
        self.failures += 1
        if self.database_ok:
            log.error(
                "database unreachable (%s): readings wait in memory (%d buffered, capacity %d)",
                error,
                len(self.buffer),
                self.buffer.capacity,
            )
        self.database_ok, self.last_error = False, error


def _nicknames(db: Session, user_ids: set[int]) -> dict[int, dict[str, str]]:
    """The user's names for their devices (``devices rename``), by user and serial."""
    out: dict[int, dict[str, str]] = {uid: {} for uid in user_ids}
    rows = db.execute(
        sa.select(Device.user_id, Device.device_id, Device.nickname).where(
            Device.user_id.in_(user_ids), Device.nickname.is_not(None)
        )
    )
    for user_id, serial, nickname in rows:
        if nickname:
            out[user_id][serial] = nickname
    return out


def describe(exc: BaseException) -> str:
    """One line naming the failure, without the statement or its parameters."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return f"{type(orig or exc).__name__}: {text[0] if text else ''}"[:200]
