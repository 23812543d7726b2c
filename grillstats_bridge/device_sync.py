"""The daemon's device sync: :func:`sync.sync_devices` rows, written only where they changed.

Every poll of every account upserts its devices and probes. Through the ORM
that is a load of the account's devices, a lazy load of each device's probes
and an UPDATE per row, every poll. :class:`DeviceSync` keeps in memory what it
last wrote for each account and, per poll, issues one small SELECT (to notice
rows changed by anyone else), then one batched UPDATE of the devices and one of
the probes that changed (one per set of columns: a probe that is unplugged keeps
its last value, a renamed device its nickname).

Anything that changes which rows exist, or rows it did not write itself, goes
through :func:`sync.sync_devices` itself, and the account's rows are read again
afterwards: a device or probe that is new or gone, a device that another user
owns, a device renamed, relinked, deactivated or deleted elsewhere (its
``updated_at`` is not the one written here), the first poll of an account, and
the first poll after a transaction rolled back. The rows end up as
``sync_devices`` leaves them; ``updated_at`` moves only on rows that changed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from grillstats_bridge import domain
from grillstats_bridge.domain import utcnow
from grillstats_bridge.models import Device, ProbeRow
from grillstats_bridge.sync import SyncResult, device_values, probe_values, sync_devices

log = logging.getLogger(__name__)

_DEVICES: sa.Table = Device.__table__  # type: ignore[assignment]
_PROBES: sa.Table = ProbeRow.__table__  # type: ignore[assignment]
_DEVICE_COLUMNS = (
    "cloud_label",
    "nickname",
    "model",
    "device_type",
    "firmware",
    "battery",
    "signal_dbm",
    "last_seen",
    "raw",
    "status",
    "is_active",
)
_PROBE_COLUMNS = (
    "label",
    "unit",
    "connected",
    "status",
    "last_value",
    "last_time",
    "alarm_high_enabled",
    "alarm_high_alarming",
    "alarm_high_value",
    "alarm_low_enabled",
    "alarm_low_alarming",
    "alarm_low_value",
    "raw",
)
_TOUCHED = "grillstats.device_sync.touched"
_LISTENING = "grillstats.device_sync.listening"


@dataclass
class _Known:
    """One device row as this process last wrote (or read) it, with its probes."""

    id: int
    updated_at: datetime | None
    renamed: bool
    values: dict[str, Any]
    probes: dict[int, tuple[int, dict[str, Any]]] = field(default_factory=dict)


class DeviceSync:
    """``sync_devices`` for one long-running writer (the daemon's pipeline thread)."""

    def __init__(self) -> None:
        self._accounts: dict[int, dict[str, _Known]] = {}
        self.fast = 0  # polls written from memory
        self.full = 0  # polls that went through sync_devices

    def sync(
        self,
        session: Session,
        user_id: int,
        devices: Sequence[domain.Device],
        *,
        now: datetime,
        complete: bool = True,
    ) -> SyncResult:
        """Upsert ``devices`` of one user, as :func:`sync.sync_devices` does."""
        self._watch(session, user_id)
        known = self._accounts.get(user_id)
        if known is not None and self._fits(session, user_id, known, devices, complete):
            self.fast += 1
            return self._write(session, known, devices, now)
        self.full += 1
        self._accounts.pop(user_id, None)
        result = sync_devices(session, user_id, devices, now=now, complete=complete)
        self._accounts[user_id] = _load(session, user_id)
        return result

    def forget(self, user_id: int | None = None) -> None:
        """Read the rows again at the next poll (of one account, or of all)."""
        if user_id is None:
            self._accounts.clear()
        else:
            self._accounts.pop(user_id, None)

    # ------------------------------------------------------------------ the fast path

    def _fits(
        self,
        session: Session,
        user_id: int,
        known: dict[str, _Known],
        devices: Sequence[domain.Device],
        complete: bool,
    ) -> bool:
        """True when the poll only changes values of rows this process wrote last."""
        serials = [d.serial for d in devices]
        if len(set(serials)) != len(serials) or not known.keys() >= set(serials):
            return False  # a new device (or a serial twice): sync_devices decides
        for device in devices:
            channels = [p.channel for p in device.probes]
            if len(set(channels)) != len(channels) or set(channels) != set(
                known[device.serial].probes
            ):
                return False  # a probe appeared or went
        if complete:
            present = set(serials)
            if any(
                serial not in present and entry.values.get("is_active") is not False
                for serial, entry in known.items()
            ):
                return False  # a device to deactivate
        rows = session.execute(
            sa.select(_DEVICES.c.id, _DEVICES.c.device_id, _DEVICES.c.updated_at).where(
                _DEVICES.c.user_id == user_id
            )
        ).all()
        if len(rows) != len(known):
            return False
        for row_id, serial, updated_at in rows:
            entry = known.get(serial)
            if entry is None or entry.id != row_id or entry.updated_at != updated_at:
                return False  # changed, added or removed by someone else
        return True

    def _write(
        self,
        session: Session,
        known: dict[str, _Known],
        devices: Sequence[domain.Device],
        now: datetime,
    ) -> SyncResult:
        stamp = utcnow()  # what the models' onupdate would write
        device_rows: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        probe_rows: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for device in devices:
            entry = known[device.serial]
            values = device_values(device, now, renamed=entry.renamed)
            if _changed(entry.values, values):
                entry.values.update(values)
                entry.updated_at = stamp
                device_rows.setdefault(tuple(values), []).append(
                    {"b_id": entry.id, "updated_at": stamp, **values}
                )
            for probe in device.probes:
                probe_id, stored = entry.probes[probe.channel]
                values = probe_values(probe, device)
                if _changed(stored, values):
                    stored.update(values)
                    probe_rows.setdefault(tuple(values), []).append(
                        {"b_id": probe_id, "updated_at": stamp, **values}
                    )
        for table, groups in ((_DEVICES, device_rows), (_PROBES, probe_rows)):
            for columns, params in groups.items():
                statement = (
                    sa.update(table)
                    .where(table.c.id == sa.bindparam("b_id"))
                    .values({c: sa.bindparam(c) for c in (*columns, "updated_at")})
                )
                session.execute(statement, params)
        return SyncResult(updated=[d.serial for d in devices])

    # ------------------------------------------------------------------ rollbacks

    def _watch(self, session: Session, user_id: int) -> None:
        """If the transaction does not commit, what was written here never happened."""
        key = (_TOUCHED, id(self))
        touched: set[int] = session.info.setdefault(key, set())
        touched.add(user_id)
        if session.info.get((_LISTENING, id(self))):
            return
        session.info[(_LISTENING, id(self))] = True

        def committed(sess: Session) -> None:
            if not sess.in_nested_transaction():  # a savepoint's release is not the commit
                sess.info.pop(key, None)

        def ended(sess: Session, transaction: SessionTransaction) -> None:
            if transaction.parent is None:
                for uid in sess.info.pop(key, ()):
                    self._accounts.pop(uid, None)

        event.listen(session, "after_commit", committed)
        event.listen(session, "after_transaction_end", ended)


def _changed(stored: dict[str, Any], values: dict[str, Any]) -> bool:
    return any(stored.get(k, _UNSET) != v for k, v in values.items())


_UNSET = object()


def _load(session: Session, user_id: int) -> dict[str, _Known]:
    """An account's device and probe rows as they are now in the transaction."""
    session.flush()
    known: dict[str, _Known] = {}
    by_id: dict[int, _Known] = {}
    for row in session.execute(sa.select(_DEVICES).where(_DEVICES.c.user_id == user_id)):
        entry = _Known(
            id=row.id,
            updated_at=row.updated_at,
            renamed=bool(row.renamed_by_user),
            values={c: getattr(row, c) for c in _DEVICE_COLUMNS},
        )
        known[row.device_id] = by_id[row.id] = entry
    if by_id:
        query = sa.select(_PROBES).where(_PROBES.c.device_id.in_(list(by_id)))
        for row in session.execute(query):
            values = {c: getattr(row, c) for c in _PROBE_COLUMNS}
            by_id[row.device_id].probes[row.channel] = (row.id, values)
    return known
