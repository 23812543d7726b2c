"""Readings in the database: batched idempotent writes, retention, and a buffer for outages."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grillstats_bridge.domain import Reading, Unit
from grillstats_bridge.store.models import ReadingRow
from grillstats_bridge.store.sql import upsert

log = logging.getLogger(__name__)

T = TypeVar("T")

PRUNE_BATCH = 10_000
_READINGS: sa.Table = ReadingRow.__table__  # type: ignore[assignment]
_UNIQUE = ("device_id", "probe", "time")


def write_readings(session: Session, readings: Iterable[Reading]) -> int:
    """Insert readings that carry a value, skipping any already stored; returns rows offered.

    One statement per batch (on PostgreSQL one multi-row INSERT: ``sql.upsert``); ON CONFLICT
    DO NOTHING on (device, probe, time) makes a replay after a crash or an outage harmless.
    """
    rows = [
        {
            "device_id": r.serial,
            "probe": r.channel,
            "time": r.time,
            "value": r.value,
            "unit": str(r.unit),
        }
        for r in readings
        if r.value is not None
    ]
    if not rows:
        return 0
    upsert(session, _READINGS, rows, keys=_UNIQUE)
    return len(rows)


def prune_readings(session: Session, older_than: datetime, batch: int = PRUNE_BATCH) -> int:
    """Delete readings older than ``older_than`` in batches (short locks); returns rows deleted."""
    total = 0
    while True:
        ids = (
            sa.select(ReadingRow.id)
            .where(ReadingRow.time < older_than)
            .limit(batch)
            .scalar_subquery()
        )
        result = session.execute(sa.delete(ReadingRow).where(ReadingRow.id.in_(ids)))
        deleted = int(getattr(result, "rowcount", 0) or 0)
        total += deleted
        if not deleted or deleted < batch:
            return total


def retention_cutoff(now: datetime, retention_days: int) -> datetime | None:
    return None if retention_days <= 0 else now - timedelta(days=retention_days)


def readings_between(
    session: Session, serial: str, probe: int, start: datetime, end: datetime | None = None
) -> Sequence[ReadingRow]:
    """One probe's stored readings in [start, end), oldest first."""
    query = sa.select(ReadingRow).where(
        ReadingRow.device_id == serial, ReadingRow.probe == probe, ReadingRow.time >= start
    )
    if end is not None:
        query = query.where(ReadingRow.time < end)
    return session.scalars(query.order_by(ReadingRow.time)).all()


def channel_readings(
    session: Session, serial: str, channels: Iterable[int], start: datetime, end: datetime
) -> list[Reading]:
    """Some channels' stored readings of one device in [start, end], oldest first."""
    rows = session.execute(
        sa.select(ReadingRow.probe, ReadingRow.time, ReadingRow.value, ReadingRow.unit)
        .where(
            ReadingRow.device_id == serial,
            ReadingRow.probe.in_(sorted(set(channels))),
            ReadingRow.time >= start,
            ReadingRow.time <= end,
        )
        .order_by(ReadingRow.time)
    )
    return [
        Reading(serial=serial, channel=probe, time=time, value=value, unit=Unit(unit))
        for probe, time, value, unit in rows
    ]


class ReadingBuffer(Generic[T]):
    """Readings waiting for the database to come back: bounded, oldest dropped first (counted).

    ``T``: what is kept of a reading (the daemon keeps the account it came from with it).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self.dropped = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def extend(self, readings: Iterable[T]) -> None:
        with self._lock:
            for reading in readings:
                if len(self._items) >= self.capacity:
                    self._items.popleft()
                    self.dropped += 1
                    if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                        log.error(
                            "reading buffer full (%d): %d oldest readings dropped so far",
                            self.capacity,
                            self.dropped,
                        )
                self._items.append(reading)

    def take(self) -> list[T]:
        """Everything buffered, oldest first; the buffer is then empty."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
            return items

    def put_back(self, readings: Sequence[T]) -> None:
        """Return readings that could not be written, ahead of newer ones."""
        with self._lock:
            newer = list(self._items)
            self._items.clear()
        self.extend([*readings, *newer])
