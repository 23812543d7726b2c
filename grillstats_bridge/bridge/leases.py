"""Account leases: several bridge processes share one PostgreSQL, each account polled by one.

Every third of ``database.lease_time`` the daemon's schedule thread calls
:meth:`LeaseKeeper.tick`, one transaction that

1. heartbeats this process's row in ``bridge_processes`` (its membership),
2. renews the leases it holds, where owner and fencing token still match,
3. computes its fair share, ``ceil(linked accounts / live processes)``, and gives
   back what it holds beyond it (another process joined: rebalance), or takes free
   and expired leases up to it (``FOR UPDATE SKIP LOCKED``, token + 1).

A lease lasts two thirds of ``lease_time`` past each renewal and a process counts
as live as long: a process that stops renewing (killed, cut off) has its accounts
taken by another process's next tick, within ``lease_time``. A process restarted in
its place (same host and index, the old pid gone) takes them at its first tick. The lease alone
does not stop a paused process from writing: the pipeline's transaction checks
its leases with :meth:`LeaseKeeper.fence` (``FOR SHARE``, same token) and drops
the polls of an account it no longer holds, and a poll's states are published
only after :meth:`LeaseKeeper.confirm`.

On SQLite there are no leases: the one process holds every account.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from grillstats_bridge.bridge.identity import ProcessIdentity
from grillstats_bridge.bridge.owners import Owners
from grillstats_bridge.bridge.pipeline import Pipeline
from grillstats_bridge.sessions.model import SessionChange
from grillstats_bridge.store import leases
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import Device, ThermoWorksCredentials

log = logging.getLogger(__name__)

FORGET_AFTER = 10  # lease times after which a silent process's row is removed


@dataclass(frozen=True)
class LeaseChange:
    """What one tick (or a failed fence) changed: accounts taken, accounts lost."""

    taken: frozenset[int] = field(default_factory=frozenset)
    lost: frozenset[int] = field(default_factory=frozenset)

    def __bool__(self) -> bool:
        return bool(self.taken or self.lost)


class LeaseKeeper:
    """This process's account leases. Ticks on the schedule thread; the other threads
    read :meth:`holds` and :meth:`confirm`, the pipeline thread calls :meth:`fence`."""

    def __init__(
        self,
        database: Database,
        identity: ProcessIdentity,
        *,
        instance_id: str,
        lease_time: float,
        clock: Callable[[], datetime],
    ) -> None:
        self.database = database
        self.identity = identity
        self.owner = identity.process_id
        self.instance_id = instance_id
        self.lease_time = lease_time
        self.enabled = database.dialect == "postgresql"
        self.clock = clock
        self._lock = threading.Lock()
        self._held: leases.Leases = {}
        self.started_at = clock()
        self.next_tick = self.started_at
        self.processes: dict[str, int] = {}  # live processes -> unexpired leases held
        self.first = self.owner  # the instance's first live process publishes the bridge device
        self.error: str | None = None  # the last tick failed: why
        self._confirm_lock = threading.Lock()  # the poll workers share one reader
        self._reader: Any = None  # a DBAPI connection (psycopg2), for confirm()
        self._reader_broken = False  # it failed: not tried again before a tick succeeds

    @property
    def validity(self) -> timedelta:
        """How long a lease lasts past a renewal (and a heartbeat keeps a process live)."""
        return timedelta(seconds=self.lease_time * 2 / 3)

    @property
    def period(self) -> timedelta:
        return timedelta(seconds=self.lease_time / 3)

    def held(self) -> dict[int, int]:
        with self._lock:
            return dict(self._held)

    def accounts(self) -> frozenset[int] | None:
        """The accounts this process holds; None: every account (no leases, SQLite)."""
        if not self.enabled:
            return None
        with self._lock:
            return frozenset(self._held)

    @property
    def leads(self) -> bool:
        """Whether this process publishes the bridge's own device: the first live process
        of its instance (by id), so that one writer keeps those topics."""
        return not self.enabled or self.first == self.owner

    def holds(self, user_id: int) -> bool:
        return not self.enabled or user_id in self._held

    # ------------------------------------------------------------------ the schedule thread

    def tick(self, now: datetime) -> LeaseChange:
        """Heartbeat, renew, rebalance: one transaction; what changed."""
        if not self.enabled:
            return LeaseChange()
        self.next_tick = now + self.period
        before = self.held()
        expires = now + self.validity
        try:
            with self.database.transaction() as db:
                held, processes = self._tick(db, before, now, expires)
        except SQLAlchemyError as exc:
            if self.error is None:
                log.warning(
                    "account leases not renewed (%s): polling goes on with the %d held; "
                    "they expire %s",
                    type(exc).__name__,
                    len(before),
                    expires.isoformat(timespec="seconds"),
                )
            self.error = type(exc).__name__
            return LeaseChange()
        if self.error is not None:
            log.info("account leases renewed again")
            self.error = None
        self._reader_broken = False
        self.processes = processes
        with self._lock:
            current = dict(self._held)  # a fence may have dropped some meanwhile
            self._held = {u: t for u, t in held.items() if u in current or u not in before}
            after = dict(self._held)
        change = LeaseChange(
            taken=frozenset(set(after) - set(before)), lost=frozenset(set(before) - set(after))
        )
        if change:
            log.info(
                "account leases: %d held (%d taken, %d given up or lost) of %d process(es)",
                len(after),
                len(change.taken),
                len(change.lost),
                len(processes),
            )
        return change

    def _tick(
        self, db: Session, before: dict[int, int], now: datetime, expires: datetime
    ) -> tuple[leases.Leases, dict[str, int]]:
        identity = self.identity
        leases.heartbeat(
            db,
            process_id=self.owner,
            instance_id=self.instance_id,
            host=identity.host,
            pid=identity.pid,
            started_at=self.started_at,
            now=now,
        )
        gone = [p for p, pid in leases.neighbours(db, identity.host) if self._replaces(p, pid)]
        if gone:  # a process this one replaces (killed, restarted): its leases are free now
            log.info("account leases of %s (stopped) taken over at once", ", ".join(gone))
            leases.expire(db, gone, now)
        held = leases.renew(db, self.owner, before, expires, now)
        live = leases.live_processes(db, since=now - self.validity, now=now)
        linked = db.scalar(sa.select(sa.func.count()).select_from(ThermoWorksCredentials)) or 0
        share = math.ceil(linked / max(1, len(live)))
        if len(held) > share and len(live) > 1:  # another process joined: give back the rest
            surplus = sorted(held)[share:]
            given = leases.give_back(db, self.owner, {u: held[u] for u in surplus}, now)
            held = {u: t for u, t in held.items() if u not in given}
        elif len(held) < share:
            held.update(leases.take(db, self.owner, share - len(held), expires, now))
        leases.forget_processes(db, now - timedelta(seconds=FORGET_AFTER * self.lease_time))
        live[self.owner] = len(held)
        first = leases.first_process(db, self.instance_id, since=now - self.validity)
        self.first = min(first or self.owner, self.owner)
        return held, live

    def _replaces(self, process_id: str, pid: int) -> bool:
        """A process of this host with this one's index that no longer runs (or whose pid
        is this process's: a container restarted) is this one's predecessor."""
        identity = self.identity
        if process_id == self.owner or not process_id.startswith(
            f"{identity.host}-{identity.index}-"
        ):
            return False
        return pid == identity.pid or not _running(pid)

    def leave(self) -> None:
        """At a clean stop: give every lease back and remove this process's row, so that
        the other processes take the accounts at their next tick, not at expiry."""
        if not self.enabled:
            return
        held = self.held()
        try:
            with self.database.transaction() as db:
                leases.give_back(db, self.owner, held, self.clock())
                leases.leave(db, self.owner)
        except SQLAlchemyError as exc:
            log.warning("account leases not given back (%s): they expire", type(exc).__name__)
            return
        with self._lock:
            self._held = {}
        if held:
            log.info("account leases: %d given back", len(held))

    # ------------------------------------------------------------------ other threads

    def fence(self, db: Session, user_ids: Collection[int]) -> set[int]:
        """In the caller's transaction: which of ``user_ids`` this process still holds,
        locked until that transaction ends (the pipeline writes only theirs)."""
        if not self.enabled:
            return set(user_ids)
        return leases.fence(db, self.owner, self.held(), user_ids)

    def confirm(self, user_id: int) -> bool:
        """Just before publishing an account's states: still ours in the database?

        One indexed read on a connection of its own, in autocommit (an ORM transaction on
        a pooled connection, with its pre-ping, cost 850 µs of CPU a poll; this 40 µs).
        The database unreachable: what this process last knew (states need no database),
        without trying again before a tick went through (no poll waits for a connect).
        """
        if not self.enabled:
            return True
        token = self._held.get(user_id)
        if token is None:
            return False
        if self._reader_broken:
            return True
        with self._confirm_lock:
            try:
                if self._reader is None:
                    self._reader = self._connect()
                cursor = self._reader.cursor()
                try:
                    cursor.execute(leases.HOLDER_SQL, (user_id,))
                    row = cursor.fetchone()
                finally:
                    cursor.close()
            except Exception:  # any failure of the driver: the database is away for now
                self._close_reader()
                self._reader_broken = True
                return True
        return row is not None and (row[0], int(row[1])) == (self.owner, token)

    def _connect(self) -> Any:
        """A driver connection outside the pool (the pool's figures stay the pipeline's),
        in autocommit, with the pool's connect timeout and statement timeout."""
        engine = self.database.engine
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        options = f"-c statement_timeout={self.database.config.statement_timeout_ms}"
        cparams.update(connect_timeout=10, application_name="grillstats-bridge", options=options)
        connection = engine.dialect.connect(*cargs, **cparams)
        connection.autocommit = True
        return connection

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                reader.close()
            except Exception:  # closing a broken connection may fail too: it is gone anyway
                log.debug("lease reader not closed cleanly", exc_info=True)

    def close(self) -> None:
        with self._confirm_lock:
            self._close_reader()

    def lose(self, user_ids: Collection[int]) -> set[int]:
        """Forget leases found taken (a fence, a confirm); returns those that were held."""
        with self._lock:
            lost = {u for u in user_ids if u in self._held}
            for user_id in lost:
                del self._held[user_id]
        if lost:
            log.warning(
                "account(s) of user %s: lease taken by another bridge process; "
                "poll dropped, no longer polled here",
                ", ".join(map(str, sorted(lost))),
            )
        return lost

    def health(self) -> dict[str, Any]:
        """For ``/health`` and the bridge device."""
        if not self.enabled:
            return {"enabled": False, "held": None}
        return {
            "enabled": True,
            "process_id": self.owner,
            "held": len(self._held),
            "lease_time": self.lease_time,
            "processes": dict(self.processes),
            "error": self.error,
        }


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running
        return True
    return True


def rescope(keeper: LeaseKeeper, pipeline: Pipeline, owners: Owners) -> list[SessionChange]:
    """After leases moved (the pipeline thread): the sessions tracked, the alerts judged,
    the device owners known and the cook tracker become those of the accounts now held
    (the tracker is rebuilt from the stored readings at the next batch, so a cook taken
    over keeps its estimate)."""
    now = keeper.clock()
    try:
        with keeper.database.transaction() as db:
            held = owned_serials(db, keeper.accounts()) or set()
            changes = pipeline.sessions.rescope(db, held, now)
            owners.load(db)
    except SQLAlchemyError as exc:  # the next poll's transaction loads them
        log.warning("sessions not reloaded after leases moved: %s", type(exc).__name__)
        return []
    pipeline.alerts.reload()
    pipeline.cook.loaded = False
    return changes


def owned_serials(db: Session, user_ids: Collection[int] | None) -> set[str] | None:
    """The devices of these accounts (None: every device)."""
    if user_ids is None:
        return None
    if not user_ids:
        return set()
    rows = db.scalars(sa.select(Device.device_id).where(Device.user_id.in_(sorted(user_ids))))
    return set(rows)
