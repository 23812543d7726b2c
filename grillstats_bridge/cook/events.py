"""The cook's events in the database: written when they happen, read back by the outbox.

Stall started, stall ended and ready go to the broker at least once, like alert
firings: :func:`record` writes them (``cook_events``) in the transaction whose
readings showed them; the daemon's outbox reads :func:`pending`, sends each and
:func:`mark_published` records the broker's acknowledgement. An event sent but not
marked is sent again with the same ``event_id`` (``cook-<id>``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grillstats_bridge.cook import history
from grillstats_bridge.cook.model import CookEvent, CookEventKind
from grillstats_bridge.domain import Unit
from grillstats_bridge.store.models import CookEventRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A cook event as the outbox reads it: its row id, the device's owner, the event."""

    id: int
    user_id: int
    event: CookEvent
    session_id: int | None = None

    @property
    def event_id(self) -> str:
        """Stable across re-sends (delivery is at least once): a repeat is dropped by it."""
        return f"cook-{self.id}"


def record(db: Session, events: Sequence[CookEvent]) -> int:
    """Write the events (each with its device's owner and active session); how many."""
    if not events:
        return 0
    serials = {e.serial for e in events}
    owners = history.owners(db, serials)
    sessions = history.active_session_ids(db, serials)
    rows = []
    for event in events:
        user_id = owners.get(event.serial)
        if user_id is None:  # readings are stored for owned devices only: not expected
            log.debug("cook event on %s not kept: no such device", event.serial)
            continue
        rows.append(
            CookEventRow(
                user_id=user_id,
                device_id=event.serial,
                session_id=sessions.get(event.serial),
                probe=event.channel,
                kind=event.kind.value,
                value=event.value,
                unit=event.unit.value,
                at=event.at,
                stall_start=event.stall_start,
                stall_seconds=event.stall_seconds,
            )
        )
    db.add_all(rows)
    return len(rows)


def pending_query(limit: int) -> sa.Select[CookEventRow]:
    """Events the broker has not acknowledged, oldest first.

    One table, ``user_id`` on every row: narrow it to some owners with
    ``.where(CookEventRow.user_id.in_(...))`` (or join ``devices`` on ``device_id``).
    """
    return (
        sa.select(CookEventRow)
        .where(CookEventRow.published_at.is_(None))
        .order_by(CookEventRow.id)
        .limit(limit)
    )


def pending(
    db: Session, limit: int, *, users: Collection[int] | None = None
) -> list[tuple[int, StoredEvent]]:
    """The waiting events as the outbox takes them: (id, event); only those of ``users``'
    devices if given (the owners whose accounts this process holds)."""
    query = pending_query(limit)
    if users is not None:
        query = query.where(CookEventRow.user_id.in_(sorted(users)))
    # No row lock (see AlertService.pending): one bridge drains a database.
    return [(row.id, stored(row)) for row in db.scalars(query)]


def mark_published(db: Session, ids: Sequence[int], at: datetime) -> int:
    """Record that the broker acknowledged these events; returns how many were marked."""
    wanted = sorted(set(ids))
    if not wanted:
        return 0
    result = db.execute(
        sa.update(CookEventRow)
        .where(CookEventRow.id.in_(wanted), CookEventRow.published_at.is_(None))
        .values(published_at=at)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def stored(row: CookEventRow) -> StoredEvent:
    return StoredEvent(
        id=row.id,
        user_id=row.user_id,
        session_id=row.session_id,
        event=CookEvent(
            kind=CookEventKind(row.kind),
            serial=row.device_id,
            channel=row.probe,
            at=row.at,
            value=row.value,
            unit=Unit(row.unit),
            stall_start=row.stall_start,
            stall_seconds=row.stall_seconds,
        ),
    )
