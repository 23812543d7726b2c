"""What happens to polls in the database: one transaction, every consumer in order.

    polls -> sync devices and probes -> store new readings -> session tracker -> alert engine
          -> cook tracker (the alerts' targets)

A poll stores and evaluates only the devices its account owns (a device row belongs
to one user): the devices the sync reports as registered to another user are
dropped from the poll, with one warning per device while it stays so, and counted
for ``/health`` (``claimed_devices``). Buffered readings keep the account they came
from and are checked the same way when they are replayed.

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
"degraded"), and the rest is stored. At a stop the buffer goes to the outage journal
(:mod:`store.journal`), and the next start replays it through the same consumers
before any new poll (:meth:`Pipeline.replay_journal`). Adding a consumer is a line in
:meth:`Pipeline._consume` and a field in :class:`Outcome`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

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
from grillstats_bridge.sessions.model import ChangeKind, SessionChange
from grillstats_bridge.sessions.service import SessionService
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.devices import DeviceSync, SyncItem, SyncResult
from grillstats_bridge.store.journal import Journal, JournalError, OwnedReading
from grillstats_bridge.store.models import Device
from grillstats_bridge.store.readings import ReadingBuffer, write_readings

log = logging.getLogger(__name__)
_NEW_PAST = (ChangeKind.ENDED, ChangeKind.STARTED)

# In the write transaction: which of these accounts this process still holds (and locks).
Fence = Callable[[Session, Collection[int]], set[int]]


@dataclass
class Outcome:
    """What the database part of some polls did (and what is left to publish)."""

    polls: Sequence[Poll]  # as polled; what was stored is ``owned``
    owned: list[Poll] = field(default_factory=list)  # each poll with only its own devices
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
    lost: set[int] = field(default_factory=set)  # accounts whose lease was taken: dropped

    def add(self, other: Outcome) -> None:
        """Fold in the outcome of part of the same batch."""
        self.stored += other.stored
        self.replayed += other.replayed
        self.owned += other.owned
        self.syncs.update(other.syncs)
        self.nicknames.update(other.nicknames)
        self.session_changes += other.session_changes
        self.firings += other.firings
        self.cook += other.cook
        self.lost |= other.lost


@dataclass(frozen=True, slots=True)
class Rejections:
    """What the database refused for good since the start (for ``/health``)."""

    polls: int = 0
    readings: int = 0
    last: str | None = None
    last_at: datetime | None = None
    claimed: int = 0  # devices polled by an account while another user owns them


@dataclass(frozen=True, slots=True)
class JournalInfo:
    """The outage journal, for ``/health``."""

    path: Path
    error: str | None  # it could not be written or read
    saved: int  # readings saved at this stop
    replayed: int  # readings replayed at this start
    pending: bool  # replayed readings still waiting for the database


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
        buffer: ReadingBuffer[OwnedReading],
        journal: Journal | None = None,
        cook: CookService | None = None,
        fence: Fence | None = None,
    ) -> None:
        self.database = database
        self.fence = fence
        self.journal = journal
        self.journal_pending = False  # replayed into the buffer, not yet written
        self.journal_error: str | None = None
        self.journal_saved = 0  # readings saved at this stop
        self.journal_replayed = 0  # readings replayed at this start
        self.last_progress: datetime | None = None  # the last transaction that went through
        self._in_flight: list[OwnedReading] = []  # taken from the buffer by a transaction running
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
        # (user id, serial) -> the user who owns it: polled by one account, another's
        self.claimed: dict[tuple[int, str], int] = {}
        self._claims_lock = threading.Lock()  # forget_account comes from another thread

    def process(self, polls: Sequence[Poll], now: datetime) -> Outcome:
        """Store polls (after anything buffered); never raises for a database outage."""
        try:
            return self._process(polls, now)
        finally:
            self._in_flight = []

    def _process(self, polls: Sequence[Poll], now: datetime) -> Outcome:
        outcome = Outcome(polls=polls)
        started = time.perf_counter()
        replay = self.buffer.take()
        self._in_flight = [*replay, *((p.user_id, r) for p in polls for r in p.readings)]
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
            outcome.syncs, outcome.owned = {}, []  # rolled back: nothing was synced
            self._failed(outcome.error)
        else:
            if not self.database_ok:
                log.warning("database reachable again: %d buffered readings written", len(replay))
            self._recovered(now)
            self._note_claims(outcome.syncs)
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _consume(
        self,
        db: Session,
        polls: Sequence[Poll],
        replay: Sequence[OwnedReading],
        now: datetime,
        out: Outcome,
    ) -> None:
        if self.fence is not None:  # first: what follows is written by the lease holder only
            users = {p.user_id for p in polls} | {user_id for user_id, _ in replay}
            held = self.fence(db, users)
            if held != users:
                out.lost |= users - held
                polls = [p for p in polls if p.user_id in held]
                if self.journal_pending:  # an earlier run's readings, of accounts moved since
                    others = [item for item in replay if item[0] not in held]
                    out.replayed += write_readings(db, _owned_readings(db, others))
                replay = [item for item in replay if item[0] in held]
        items = [
            SyncItem(poll.user_id, poll.devices, poll.polled_at, complete=poll.malformed == 0)
            for poll in polls
        ]
        owned: list[Poll] = []
        for poll, result in zip(polls, self.devices.sync_many(db, items), strict=True):
            out.syncs[poll.user_id] = result
            owned.append(_owned_part(poll, result))
        out.owned = owned
        mine: list[Reading] = []
        if replay:  # older than the polls: first (the devices are synced, so owners known)
            mine = _owned_readings(db, replay)
            out.replayed += write_readings(db, mine)
            out.session_changes += self.sessions.process(db, mine, now=now)
            out.firings += self.alerts.process(db, mine, now)
        out.nicknames = _nicknames(db, {p.user_id for p in polls})
        readings = [r for poll in owned for r in poll.readings]
        out.stored = write_readings(db, readings)
        out.session_changes += self.sessions.process_polls(db, owned, now)
        out.firings += self.alerts.process(db, readings, now)
        devices = [d for poll in owned for d in poll.devices]
        batch = [*mine, *readings]
        # a session ended (or one began: the last may have been ended from the CLI): the
        # cook's calibration from past sessions is read again
        ended = {c.serial for c in out.session_changes if c.kind in _NEW_PAST}
        out.cook.append(
            self.cook.process(db, batch, devices, self.alerts.targets(), now, ended=ended)
        )

    def _note_claims(self, syncs: dict[int, SyncResult]) -> None:
        """After a commit: warn once of each device an account polls but does not own."""
        with self._claims_lock:
            for user_id, result in syncs.items():
                self._note_account(user_id, result)

    def _note_account(self, user_id: int, result: SyncResult) -> None:
        for serial in [s for (u, s) in self.claimed if u == user_id]:
            if serial not in result.claimed_by:
                del self.claimed[(user_id, serial)]
        for serial, owner in result.claimed_by.items():
            if self.claimed.get((user_id, serial)) != owner:
                log.warning(
                    "device %s polled by the account of user %d is registered to user %d: "
                    "its readings are not stored for user %d (a resold device: "
                    "'grillstats-bridge devices transfer')",
                    serial,
                    user_id,
                    owner,
                    user_id,
                )
            self.claimed[(user_id, serial)] = owner

    def forget_account(self, user_id: int) -> None:
        """An account is no longer polled: its claims are no longer reported."""
        with self._claims_lock:
            self.claimed = {k: v for k, v in self.claimed.items() if k[0] != user_id}

    def rejections(self) -> Rejections:
        return Rejections(
            self.rejected_polls,
            self.rejected_readings,
            self.last_rejection,
            self.last_rejection_at,
            claimed=len(self.claimed),
        )

    def _buffer(self, polls: Sequence[Poll], replay: Sequence[OwnedReading]) -> None:
        self.buffer.put_back(replay)
        for poll in polls:
            self.buffer.extend((poll.user_id, r) for r in poll.readings)

    def _one_by_one(
        self,
        polls: Sequence[Poll],
        replay: Sequence[OwnedReading],
        now: datetime,
        started: float,
    ) -> Outcome:
        """After a permanent failure: each poll (and the replayed buffer) on its own; what
        still fails is rejected, the rest stored; a transient failure meanwhile buffers
        what is left."""
        outcome = Outcome(polls=polls)
        parts: list[tuple[Sequence[Poll], Sequence[OwnedReading]]] = [((p,), ()) for p in polls]
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
            self._note_claims(part.syncs)
        else:
            self._recovered(now)
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _reject(
        self,
        polls: Sequence[Poll],
        replay: Sequence[OwnedReading],
        exc: BaseException,
        now: datetime,
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

    def _recovered(self, now: datetime) -> None:
        """A transaction went through: nothing buffered is waiting for the database."""
        self.database_ok, self.last_error, self.failures = True, None, 0
        self.last_progress = now
        if self.journal_pending and self.journal is not None and not len(self.buffer):
            self.journal_pending = False
            try:
                self.journal.clear()
            except JournalError as exc:  # replayed again at the next start: harmless
                log.warning("journal: %s; its readings are stored", exc)

    def persist(self, queued: Sequence[OwnedReading] = (), *, in_flight: bool = False) -> int:
        """At a stop: the buffer goes to the journal; returns the readings lost (0 if none).

        With ``in_flight`` (a transaction still waits for the database at the stop: it
        took the buffer) its readings go too, ahead of the buffer, and ``queued`` (polls
        it never took) after it. Should that transaction still commit before the process
        ends, the replay writes its readings once more: the readings table ignores them.
        """
        readings = [*(self._in_flight if in_flight else ()), *self.buffer.take(), *queued]
        if not readings:
            return 0
        if self.journal is None:
            log.error("%d buffered readings lost: no journal to keep them in", len(readings))
            return len(readings)
        try:
            self.journal.save(readings)
        except JournalError as exc:
            self.journal_error = str(exc)
            log.error("%d buffered readings lost: the journal %s", len(readings), exc)
            return len(readings)
        self.journal_saved = len(readings)
        log.warning(
            "database unreachable at the stop: %d buffered readings saved to %s, "
            "written at the next start",
            len(readings),
            self.journal.path,
        )
        return 0

    def journal_info(self) -> JournalInfo | None:
        if self.journal is None:
            return None
        return JournalInfo(
            self.journal.path,
            self.journal_error,
            self.journal_saved,
            self.journal_replayed,
            self.journal_pending,
        )

    def replay_journal(self, now: datetime) -> Outcome | None:
        """At a start, before any poll: what the last stop saved goes through the consumers."""
        if self.journal is None:
            return None
        try:
            readings = self.journal.load()
        except JournalError as exc:
            self.journal_error = str(exc)
            log.error("journal: %s; its readings are not replayed", exc)
            return None
        if self.journal.skipped:
            log.error(
                "journal: %d unreadable line(s) in %s skipped",
                self.journal.skipped,
                self.journal.path,
            )
        if not readings:
            self.journal_pending = self.journal.exists()
            self._recovered(now)  # an empty (or unreadable) file: nothing to keep it for
            return None
        self.journal_pending = True
        self.buffer.put_back(readings)
        # Until they are written, readings of an account another process holds now (the
        # accounts were shared out again since that stop) are stored, and no more: its
        # sessions, alerts and states are the holder's.
        outcome = self.process([], now)
        self.journal_replayed = len(readings)
        if outcome.database_ok:
            log.info(
                "journal: %d readings saved at the last stop replayed (%d alert firing(s))",
                len(readings),
                len(outcome.firings),
            )
        else:
            log.warning(
                "journal: %d readings saved at the last stop wait for the database",
                len(readings),
            )
        return outcome

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


def _owned_part(poll: Poll, result: SyncResult) -> Poll:
    """The poll with only the devices (and their readings) its account owns."""
    if not result.claimed_by:
        return poll
    foreign = result.claimed_by
    return replace(
        poll,
        devices=tuple(d for d in poll.devices if d.serial not in foreign),
        readings=tuple(r for r in poll.readings if r.serial not in foreign),
    )


def _owned_readings(db: Session, replay: Sequence[OwnedReading]) -> list[Reading]:
    """Buffered readings whose device belongs to the account that polled them."""
    serials = sorted({r.serial for _, r in replay})
    query = sa.select(Device.device_id, Device.user_id).where(Device.device_id.in_(serials))
    owners = {serial: user_id for serial, user_id in db.execute(query)}
    return [r for user_id, r in replay if owners.get(r.serial) == user_id]


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
