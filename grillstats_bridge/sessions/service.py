"""Sessions in the database: the tracker's decisions stored, manual commands, history, export.

The daemon owns one :class:`SessionService`: ``load`` rebuilds the tracker from
the database at start, ``process`` runs every poll through it and writes what
changed in the caller's transaction (a fixed handful of statements per poll,
never one per reading), ``tick`` ends what has timed out between polls, and
``start`` / ``end`` / ``cancel`` serve the Home Assistant buttons. The CLI uses
the same service without loading it: the database is the authority on which
session is active, and every call first brings the tracker in line with it, so
a session started or ended by the CLI while the daemon runs is picked up on the
daemon's next poll.

If the transaction that carried a call rolls back, the tracker's state for the
devices it touched is put back as it was, so a retried poll is not lost.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, TextIO

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from grillstats_bridge.config import SessionsConfig
from grillstats_bridge.domain import Poll, Reading, Unit, clean_float
from grillstats_bridge.errors import UsageError
from grillstats_bridge.sessions.model import (
    Batch,
    ChangeKind,
    EndReason,
    ManualEnd,
    ManualStart,
    ProbeSummary,
    Rules,
    SessionChange,
    SessionSnapshot,
    SessionStatus,
    SessionType,
    StoredSession,
)
from grillstats_bridge.sessions.tracker import SessionTracker
from grillstats_bridge.store.models import (
    Device,
    GrillingSession,
    GrillingSessionProbe,
    ReadingRow,
    SessionCookProbe,
    SessionTrackerState,
    User,
)
from grillstats_bridge.store.sql import rollback_hook, upsert

log = logging.getLogger(__name__)

ExportFormat = Literal["csv", "json"]
STATUSES = tuple(s.value for s in SessionStatus)

_SESSIONS: sa.Table = GrillingSession.__table__  # type: ignore[assignment]
_PROBES: sa.Table = GrillingSessionProbe.__table__  # type: ignore[assignment]
_STATES: sa.Table = SessionTrackerState.__table__  # type: ignore[assignment]
# A device's tracker state is saved when its discrete state changes (a cook starts,
# cools, ends...) and otherwise at most this often: idle levels drift slowly, and a
# running session's statistics are in its rows, written with every poll.
STATE_SAVE_INTERVAL = 300.0
_UNDO = "grillstats.sessions.undo"


class SessionService:
    """The session tracker bound to the database."""

    def __init__(self, config: SessionsConfig) -> None:
        self.config = config
        self.rules = Rules.from_config(config)
        self.tracker = SessionTracker(self.rules)
        self.loaded = False  # only a loaded service (the daemon's) saves tracker state
        self._saved: dict[str, tuple[tuple[Any, ...], float]] = {}  # checkpoint key, when
        # The devices a load reads (None: all): the accounts this process holds, and the
        # devices their polls bring since.
        self.scope: set[str] | None = None

    # ----------------------------------------------------------------- the daemon

    def load(
        self, db: Session, now: datetime, serials: Collection[str] | None = None
    ) -> list[SessionChange]:
        """Rebuild the tracker from the database; close what the downtime ended.

        ``serials``: only these devices (the accounts this process holds a lease on).
        """
        self._remember(db, (), reload=True)
        self.tracker = SessionTracker(self.rules)
        self._saved.clear()
        self.loaded = True
        if serials is not None:
            self.scope = set(serials)
        sessions = sa.select(_SESSIONS).where(_SESSIONS.c.status == SessionStatus.ACTIVE)
        states = sa.select(_STATES.c.device_id, _STATES.c.state)
        if self.scope is not None:
            wanted = sorted(self.scope)
            sessions = sessions.where(_SESSIONS.c.device_id.in_(wanted))
            states = states.where(_STATES.c.device_id.in_(wanted))
        active = {row.device_id: row for row in db.execute(sessions)}
        for row in db.execute(states):
            running = active.get(row.device_id)
            try:
                # The session row was written with the last poll: it dates the outage.
                seen = running.updated_at if running is not None else None
                self.tracker.restore_state(row.device_id, row.state, seen=seen)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning(
                    "session tracker state of %s unreadable (%s): starting it afresh",
                    row.device_id,
                    exc,
                )
                self.tracker.forget(row.device_id)
        probes = self._probe_summaries(db, [r.id for r in active.values()]) if active else {}
        for row in active.values():
            self.tracker.restore_stats(_snapshot(row, probes.get(row.id, ())))
        serials = sorted({*self.tracker.serials(), *active})
        changes = self._run(db, Batch(now=now, tick=True), serials, force=True)
        if changes:
            log.info("sessions: %d change(s) on start-up", len(changes))
        return changes

    def rescope(self, db: Session, serials: Collection[str], now: datetime) -> list[SessionChange]:
        """The devices this process tracks changed (account leases moved): what it knows
        of those it keeps is saved, then every one of them is loaded afresh."""
        keep = set(serials)
        if self.loaded:
            kept = sorted(keep.intersection(self.tracker.serials()))
            self._save_states(db, kept, now, force=True)
        return self.load(db, now, serials=keep)

    def process(
        self, db: Session, poll: Poll | Iterable[Reading], now: datetime | None = None
    ) -> list[SessionChange]:
        """Run one poll (or plain readings) through the tracker and store what changed.

        ``now`` is the injected clock: the poll's own time by default; plain readings
        need it. Statements: one small SELECT, then at most one batched UPDATE of
        sessions, one batched upsert of probe statistics and one of tracker state
        (plus an INSERT per session that starts), however many readings.
        """
        if isinstance(poll, Poll):
            return self.process_polls(db, [poll], now)
        if now is None:
            raise ValueError("process(readings) needs the time: now=...")
        readings = list(poll)
        serials = sorted({r.serial for r in readings})
        changes = [] if self.loaded else self.load(db, now)
        return changes + self._run(db, Batch(now=now, readings=readings), serials)

    def process_polls(
        self, db: Session, polls: Sequence[Poll], now: datetime | None = None
    ) -> list[SessionChange]:
        """Several polls (of different accounts) with the statements of one."""
        if not polls:
            return []
        when = now if now is not None else max(p.polled_at for p in polls)
        owners: dict[str, int] = {}
        for poll in polls:
            owners.update({d.serial: poll.user_id for d in poll.devices})
            owners.update({r.serial: poll.user_id for r in poll.readings})
        serials = sorted(owners)
        if self.scope is not None:
            self.scope.update(serials)
        changes = [] if self.loaded else self.load(db, when)
        batch = Batch(now=when, polls=polls, poll_time=now)
        return changes + self._run(db, batch, serials, owners=owners)

    def tick(self, db: Session, now: datetime) -> list[SessionChange]:
        """Between polls: end sessions that timed out (a device nobody polls any more)."""
        if not self.loaded:
            return self.load(db, now)
        serials = self.tracker.active_serials()
        self._remember(db, self.tracker.serials())
        return self._run(db, Batch(now=now, tick=True), serials, save="changed")

    # ----------------------------------------------------------------- manual sessions

    def start(
        self, db: Session, serial: str, now: datetime, name: str | None = None
    ) -> list[SessionChange]:
        """Start a manual session on a device (an automatic one running becomes manual).

        The last change is the one asked for (STARTED, or UPDATED for an automatic
        session made manual); any before it are what the database said had changed.
        """
        owner = db.scalar(sa.select(Device.user_id).where(Device.device_id == serial))
        if owner is None:
            raise UsageError(f"no device with serial {serial!r}")
        batch = Batch(now=now, start=ManualStart(serial, name))
        return self._run(db, batch, [serial], owners={serial: owner}, lock=True)

    def end(
        self, db: Session, session_id: int, now: datetime, *, cancel: bool = False
    ) -> list[SessionChange]:
        """End (or cancel) an active session now, by hand; the last change is its end."""
        row = db.execute(
            sa.select(_SESSIONS.c.device_id, _SESSIONS.c.status).where(_SESSIONS.c.id == session_id)
        ).one_or_none()
        if row is None:
            raise UsageError(f"no session with id {session_id}")
        if row.status != SessionStatus.ACTIVE:
            raise UsageError(f"session {session_id} is {row.status}, not active")
        batch = Batch(now=now, end=ManualEnd(row.device_id, session_id, cancel))
        return self._run(db, batch, [row.device_id], lock=True)

    def cancel(self, db: Session, session_id: int, now: datetime) -> list[SessionChange]:
        return self.end(db, session_id, now, cancel=True)

    # ----------------------------------------------------------------- tracker <-> database

    def _run(
        self,
        db: Session,
        batch: Batch,
        serials: Sequence[str],
        *,
        owners: dict[str, int] | None = None,
        save: Literal["all", "changed", "none"] = "all",
        force: bool = False,
        lock: bool = False,
    ) -> list[SessionChange]:
        """One pass: read what the database says of ``serials``, hand it and the batch to
        the tracker once, store what it decided once. ``save``: whose tracker state to
        checkpoint (every device of ``serials``, those that changed, or none)."""
        self._remember(db, serials)
        stored, snapshots = self._stored(db, serials, lock=lock)
        step = self.tracker.step(
            replace(batch, serials=serials, stored=stored, snapshots=snapshots)
        )
        changes = step.known + self._persist(db, step.changes, owners or {}, batch.now)
        if save != "none":
            changed = sorted({c.serial for c in changes})
            self._save_states(db, serials if save == "all" else changed, batch.now, force=force)
        return changes

    def _stored(
        self, db: Session, serials: Sequence[str], *, lock: bool = False
    ) -> tuple[dict[str, StoredSession], dict[int, tuple[SessionSnapshot, datetime]]]:
        """The active sessions of ``serials`` (one small query), and the full rows of those
        the tracker needs (to take over, or to report as ended elsewhere)."""
        if not serials:
            return {}, {}
        c = _SESSIONS.c
        query = sa.select(c.id, c.device_id, c.session_type, c.auto_named, c.name).where(
            c.device_id.in_(serials), c.status == SessionStatus.ACTIVE
        )
        stored = {
            r.device_id: StoredSession(r.id, SessionType(r.session_type), r.auto_named, r.name)
            for r in db.execute(query.with_for_update() if lock else query)
        }
        wanted = self.tracker.wanted(serials, stored)
        return stored, self._snapshots(db, wanted) if wanted else {}

    def _snapshots(
        self, db: Session, ids: Sequence[int]
    ) -> dict[int, tuple[SessionSnapshot, datetime]]:
        """Stored sessions as snapshots, with the last time each was known to run."""
        probes = self._probe_summaries(db, ids)
        out: dict[int, tuple[SessionSnapshot, datetime]] = {}
        for row in db.execute(sa.select(_SESSIONS).where(_SESSIONS.c.id.in_(ids))):
            snapshot = _snapshot(row, probes.get(row.id, ()))
            # The last time the session was known to run: its offline clock starts there.
            known = [p.last_time for p in snapshot.probes if p.last_time is not None]
            if row.updated_at is not None:
                known.append(row.updated_at)
            out[row.id] = (snapshot, max(known, default=row.start_time))
        return out

    def _probe_summaries(
        self, db: Session, session_ids: Sequence[int]
    ) -> dict[int, tuple[ProbeSummary, ...]]:
        out: dict[int, list[ProbeSummary]] = {}
        query = (
            sa.select(_PROBES)
            .where(_PROBES.c.session_id.in_(session_ids))
            .order_by(_PROBES.c.session_id, _PROBES.c.probe)
        )
        for p in db.execute(query):
            out.setdefault(p.session_id, []).append(
                ProbeSummary(
                    channel=p.probe,
                    label=p.label,
                    unit=Unit(p.unit),
                    samples=p.sample_count,
                    minimum=p.min_temperature,
                    maximum=p.max_temperature,
                    average=p.avg_temperature,
                    weighted_seconds=p.weighted_seconds,
                    first_time=p.first_time,
                    last_time=p.last_time,
                    last_value=p.last_value,
                )
            )
        return {k: tuple(v) for k, v in out.items()}

    def _persist(
        self,
        db: Session,
        changes: Sequence[SessionChange],
        owners: dict[str, int],
        now: datetime,
    ) -> list[SessionChange]:
        """Write the tracker's changes: an INSERT per new session, then one batched UPDATE
        of sessions and one batched upsert of probe statistics. Returns the changes with
        their database ids."""
        if not changes:
            return []
        stored: list[SessionChange] = []
        new_ids: dict[str, int] = {}
        updates: dict[int, dict[str, Any]] = {}
        probe_rows: dict[tuple[int, int], dict[str, Any]] = {}
        lookup = [
            c.serial for c in changes if c.session.session_id is None and c.serial not in owners
        ]
        if lookup:
            found = db.execute(
                sa.select(Device.device_id, Device.user_id).where(Device.device_id.in_(lookup))
            )
            owners = owners | {serial: user_id for serial, user_id in found}
        for change in changes:
            snap = change.session
            session_id = snap.session_id
            if session_id is None and change.kind is not ChangeKind.STARTED:
                session_id = new_ids.get(snap.serial)
            if session_id is None:
                owner = owners.get(snap.serial)
                if owner is None:
                    log.warning("session on unknown device %s not stored", snap.serial)
                    continue
                session_id = self._insert(db, snap, owner, now)
                if session_id is None:  # another process started one meanwhile: take it over
                    stored += self._run(db, Batch(now=now), [snap.serial], save="none")
                    continue
                new_ids[snap.serial] = session_id
                live = self.tracker.active(snap.serial)
                if live is not None and live.session_id is None and live.start == snap.start:
                    self.tracker.bind(snap.serial, session_id)
            snap = _with_id(snap, session_id)
            stored.append(SessionChange(kind=change.kind, session=snap, at=change.at))
            updates[session_id] = {"b_id": session_id, **_session_values(snap, now)}
            for p in snap.probes:
                probe_rows[(session_id, p.channel)] = _probe_values(session_id, p)
        if updates:
            db.execute(
                sa.update(_SESSIONS)
                .where(
                    _SESSIONS.c.id == sa.bindparam("b_id"),
                    _SESSIONS.c.status == SessionStatus.ACTIVE,
                )
                .values({k: sa.bindparam(k) for k in _SESSION_COLUMNS}),
                list(updates.values()),
            )
        upsert(
            db,
            _PROBES,
            list(probe_rows.values()),
            keys=["session_id", "probe"],
            update=_PROBE_COLUMNS,
        )
        return stored

    def _insert(self, db: Session, snap: SessionSnapshot, owner: int, now: datetime) -> int | None:
        """A new session row; None when the device already has an active one (unique index)."""
        values = _session_values(snap, now)
        statement = (
            sa.insert(_SESSIONS)
            .values(user_id=owner, device_id=snap.serial, created_at=now, **values)
            .returning(_SESSIONS.c.id)
        )
        try:
            with db.begin_nested():
                return int(db.execute(statement).scalar_one())
        except IntegrityError:
            log.info("device %s already has an active session: taking it over", snap.serial)
            return None

    def _save_states(
        self, db: Session, serials: Sequence[str], now: datetime, *, force: bool = False
    ) -> None:
        """Upsert the tracker's state of those devices that need it (one batched statement)."""
        if not self.loaded or not serials:
            return
        now_s = now.timestamp()
        rows = []
        for serial in serials:
            key = self.tracker.checkpoint_key(serial)
            saved = self._saved.get(serial)
            if force or saved is None or saved[0] != key or now_s - saved[1] >= STATE_SAVE_INTERVAL:
                state = self.tracker.export_state(serial, session_stats=False)
                rows.append({"device_id": serial, "state": state, "updated_at": now})
                self._saved[serial] = (key, now_s)
        upsert(db, _STATES, rows, keys=["device_id"], update=["state", "updated_at"])

    # ----------------------------------------------------------------- undo on rollback

    def _remember(self, db: Session, serials: Iterable[str], *, reload: bool = False) -> None:
        """Keep the tracker's state of these devices until the transaction ends."""
        record = rollback_hook(db, (_UNDO, id(self)), lambda: _Undo(self))
        record.reload = record.reload or reload
        known = set(self.tracker.serials())
        for serial in serials:
            if serial not in record.saved:
                record.saved[serial] = (
                    self.tracker.export_state(serial) if serial in known else None
                )


@dataclass
class _Undo:
    """How to put a service's tracker back if the transaction rolls back."""

    service: SessionService
    saved: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    reload: bool = False  # the transaction loaded the tracker: load it again next time

    def rolled_back(self) -> None:
        tracker = self.service.tracker
        if self.reload:
            self.service.loaded = False
            self.service.tracker = SessionTracker(self.service.rules)
        else:
            for serial, state in self.saved.items():
                self.service._saved.pop(serial, None)  # what was saved is gone with the rollback
                if state is None:
                    tracker.forget(serial)
                else:
                    tracker.restore_state(serial, state, after_restart=False)
        log.debug(
            "sessions: transaction rolled back; tracker state of %d device(s) put back",
            len(self.saved),
        )


# --------------------------------------------------------------------------- rows


_SESSION_COLUMNS = (
    "name",
    "session_type",
    "status",
    "start_time",
    "end_time",
    "max_temperature",
    "min_temperature",
    "avg_temperature",
    "temperature_unit",
    "auto_named",
    "end_reason",
    "updated_at",
)
_PROBE_COLUMNS = (
    "label",
    "unit",
    "sample_count",
    "min_temperature",
    "max_temperature",
    "avg_temperature",
    "weighted_seconds",
    "first_time",
    "last_time",
    "last_value",
)


def _rounded(value: float | None) -> float | None:
    return None if value is None else clean_float(value)


def _session_values(snap: SessionSnapshot, now: datetime) -> dict[str, Any]:
    return {
        "name": snap.name,
        "session_type": snap.session_type.value,
        "status": snap.status.value,
        "start_time": snap.start,
        "end_time": snap.end,
        "max_temperature": _rounded(snap.maximum),
        "min_temperature": _rounded(snap.minimum),
        "avg_temperature": _rounded(snap.average),
        "temperature_unit": snap.unit.value if snap.unit else None,
        "auto_named": snap.auto_named,
        "end_reason": snap.end_reason.value if snap.end_reason else None,
        "updated_at": now,
    }


def _probe_values(session_id: int, p: ProbeSummary) -> dict[str, Any]:
    # Unrounded: a restart rebuilds the running means from these.
    return {
        "session_id": session_id,
        "probe": p.channel,
        "label": p.label,
        "unit": p.unit.value,
        "sample_count": p.samples,
        "min_temperature": p.minimum,
        "max_temperature": p.maximum,
        "avg_temperature": p.average,
        "weighted_seconds": p.weighted_seconds,
        "first_time": p.first_time,
        "last_time": p.last_time,
        "last_value": p.last_value,
    }


def _with_id(snap: SessionSnapshot, session_id: int) -> SessionSnapshot:
    return snap if snap.session_id == session_id else replace(snap, session_id=session_id)


def _snapshot(row: Any, probes: Sequence[ProbeSummary]) -> SessionSnapshot:
    """A stored session (a ``grilling_sessions`` row) as the tracker's snapshot."""
    return SessionSnapshot(
        serial=row.device_id,
        session_id=row.id,
        session_type=SessionType(row.session_type or SessionType.AUTO),
        status=SessionStatus(row.status or SessionStatus.ACTIVE),
        name=row.name or "",
        auto_named=bool(row.auto_named),
        start=row.start_time,
        end=row.end_time,
        unit=Unit(row.temperature_unit) if row.temperature_unit else None,
        minimum=row.min_temperature,
        maximum=row.max_temperature,
        average=row.avg_temperature,
        probes=tuple(probes),
        end_reason=EndReason(row.end_reason) if row.end_reason else None,
    )


# --------------------------------------------------------------------------- history


def get_session(db: Session, session_id: int) -> GrillingSession:
    session = db.get(GrillingSession, session_id)
    if session is None:
        raise UsageError(f"no session with id {session_id}")
    return session


def probe_statistics(db: Session, session_id: int) -> Sequence[GrillingSessionProbe]:
    return db.scalars(
        sa.select(GrillingSessionProbe)
        .where(GrillingSessionProbe.session_id == session_id)
        .order_by(GrillingSessionProbe.probe)
    ).all()


def list_sessions(
    db: Session,
    *,
    user_email: str | None = None,
    serial: str | None = None,
    statuses: Iterable[str] = (),
    limit: int | None = None,
) -> Sequence[tuple[GrillingSession, str]]:
    """Sessions, newest first, with their user's email."""
    query = sa.select(GrillingSession, User.email).join(User, User.id == GrillingSession.user_id)
    if user_email is not None:
        from grillstats_bridge.store.users import get_user

        query = query.where(GrillingSession.user_id == get_user(db, user_email).id)
    if serial is not None:
        if db.scalar(sa.select(Device.id).where(Device.device_id == serial)) is None and (
            db.scalar(sa.select(GrillingSession.id).where(GrillingSession.device_id == serial))
            is None
        ):
            raise UsageError(f"no device with serial {serial!r}")
        query = query.where(GrillingSession.device_id == serial)
    wanted = list(statuses)
    for status in wanted:
        if status not in STATUSES:
            raise UsageError(f"unknown status {status!r} (expected {', '.join(STATUSES)})")
    if wanted:
        query = query.where(GrillingSession.status.in_(wanted))
    query = query.order_by(GrillingSession.start_time.desc(), GrillingSession.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return [(s, email) for s, email in db.execute(query)]


def session_readings(db: Session, session: GrillingSession, now: datetime) -> Iterator[ReadingRow]:
    """The stored readings of a session's device between its start and end (now while
    active), oldest first, streamed."""
    end = session.end_time or now
    query = (
        sa.select(ReadingRow)
        .where(
            ReadingRow.device_id == session.device_id,
            ReadingRow.time >= session.start_time,
            ReadingRow.time <= end,
        )
        .order_by(ReadingRow.time, ReadingRow.probe)
        .execution_options(yield_per=2000)
    )
    yield from db.scalars(query)


def summary(session: GrillingSession, now: datetime) -> dict[str, Any]:
    """A session as plain JSON-compatible values (``session export`` and the CLI)."""
    end = session.end_time or now
    return {
        "id": session.id,
        "device": session.device_id,
        "name": session.name,
        "type": session.session_type,
        "status": session.status,
        "start": session.start_time.isoformat(),
        "end": session.end_time.isoformat() if session.end_time else None,
        "duration_s": round(max((end - session.start_time).total_seconds(), 0.0)),
        "unit": session.temperature_unit,
        "min_temperature": session.min_temperature,
        "max_temperature": session.max_temperature,
        "avg_temperature": session.avg_temperature,
        "end_reason": session.end_reason,
        # its first stall, from the cook tracker (docs/cook.md)
        "stall_start": session.stall_start.isoformat() if session.stall_start else None,
        "stall_end": session.stall_end.isoformat() if session.stall_end else None,
        "stall_seconds": session.stall_seconds,
    }


COOK_COLUMNS = (
    "probe",
    "target",
    "unit",
    "cook_state",
    "temperature",
    "progress",
    "done_at",
    "done_low",
    "done_high",
    "estimate_method",
    "cook_method",
    "ready_at",
    "stall_start",
    "stall_end",
    "stall_seconds",
    "as_of",
)


def cook_figures(db: Session, session_id: int) -> list[dict[str, Any]]:
    """The session's probes with a target as the cook tracker last saw them (docs/cook.md),
    by probe: the done-at estimate and its band, the state, the first stall."""

    def stamp(when: datetime | None) -> str | None:
        return when.isoformat() if when is not None else None

    rows = db.scalars(
        sa.select(SessionCookProbe)
        .where(SessionCookProbe.session_id == session_id)
        .order_by(SessionCookProbe.probe)
    )
    return [
        {
            "probe": r.probe,
            "target": r.target,
            "unit": r.unit,
            "cook_state": r.state,
            "temperature": r.value,
            "progress": r.progress,
            "done_at": stamp(r.done_at),
            "done_low": stamp(r.done_low),
            "done_high": stamp(r.done_high),
            "estimate_method": r.method,
            "cook_method": r.cook_method,  # None: not recorded (a session before 0014)
            "ready_at": stamp(r.ready_at),
            "stall_start": stamp(r.stall_start),
            "stall_end": stamp(r.stall_end),
            "stall_seconds": None if r.stall_seconds is None else round(r.stall_seconds),
            "as_of": stamp(r.updated_at),
        }
        for r in rows
    ]


def export_session(
    db: Session, session_id: int, fmt: ExportFormat, out: TextIO, now: datetime
) -> int:
    """Write a session's readings as CSV (time, probe, value, unit; then, after a blank
    line, the cook figures of its probes with a target) or JSON (the summary, per-probe
    statistics, the cook figures and the readings); returns how many readings were written."""
    session = get_session(db, session_id)
    rows = session_readings(db, session, now)
    count = 0
    cook = cook_figures(db, session_id)
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["time", "probe", "value", "unit"])
        for r in rows:
            writer.writerow([r.time.isoformat(), r.probe, r.value, r.unit])
            count += 1
        if cook:  # a second section, after a blank line: one row per probe with a target
            out.write("\n")
            writer.writerow(COOK_COLUMNS)
            for figures in cook:
                writer.writerow(["" if figures[c] is None else figures[c] for c in COOK_COLUMNS])
        return count
    head = summary(session, now) | {
        "probes": [
            {
                "probe": p.probe,
                "label": p.label,
                "unit": p.unit,
                "samples": p.sample_count,
                "min_temperature": _rounded(p.min_temperature),
                "max_temperature": _rounded(p.max_temperature),
                "avg_temperature": _rounded(p.avg_temperature),
            }
            for p in probe_statistics(db, session_id)
        ],
        "cook": cook,
    }
    out.write('{"session": ' + json.dumps(head) + ', "readings": [')
    for r in rows:
        item = {"time": r.time.isoformat(), "probe": r.probe, "value": r.value, "unit": r.unit}
        out.write(("\n  " if count == 0 else ",\n  ") + json.dumps(item))
        count += 1
    out.write("\n]}\n" if count else "]}\n")
    return count
