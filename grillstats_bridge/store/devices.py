"""Devices and probes in the database: what a poll writes, and the daemon's cheap way to write it.

:func:`sync_devices` upserts one account's devices and probes through the ORM
(the CLI and anything that changes which rows exist use it); :func:`rename_device`
gives a device the user's own name.

Every poll of every account upserts its devices and probes. Through the ORM
that is a load of the account's devices, a lazy load of each device's probes
and an UPDATE per row, every poll. :class:`DeviceSync` keeps in memory what it
last wrote for each account and, per poll, issues one small SELECT (to notice
rows changed by anyone else), then one batched UPDATE of the devices and one of
the probes that changed, of the columns that changed (one per set of columns: a
probe that is unplugged keeps its last value, a renamed device its nickname; the
``raw`` JSON is left alone while its fields stay the same).

Anything that changes which rows exist, or rows it did not write itself, goes
through :func:`sync_devices` itself, and the account's rows are read again
afterwards: a device or probe that is new or gone, a device that another user
owns, a device renamed, relinked, deactivated or deleted elsewhere (its
``updated_at`` is not the one written here), the first poll of an account, and
the first poll after a transaction rolled back. The rows end up as
``sync_devices`` leaves them; ``updated_at`` moves only on rows that changed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grillstats_bridge import domain
from grillstats_bridge.domain import Poll, utcnow
from grillstats_bridge.errors import UsageError
from grillstats_bridge.store import bulk
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import Device, ProbeRow
from grillstats_bridge.store.sql import rollback_hook

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------ the rows of a poll


@dataclass(slots=True)
class SyncResult:
    """What one sync changed."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # serials another user already has
    claimed_by: dict[str, int] = field(default_factory=dict)  # conflict serial -> its owner

    def owned(self) -> set[str]:
        """The serials of the poll that the account owns: what it may store and evaluate."""
        return {*self.added, *self.updated}


def sync_poll(database: Database, poll: Poll) -> SyncResult:
    """Upsert a poll's devices and probes; vanished devices become inactive.

    When documents were skipped as malformed, nothing is marked inactive: a
    device whose document could not be read has not left the account.
    """
    with database.transaction() as session:
        return sync_devices(
            session, poll.user_id, poll.devices, now=poll.polled_at, complete=poll.malformed == 0
        )


def sync_devices(
    session: Session,
    user_id: int,
    devices: Sequence[domain.Device],
    *,
    now: datetime,
    complete: bool = True,
) -> SyncResult:
    """Upsert ``devices`` of one user (``device_id`` = serial) and their probes."""
    result = SyncResult()
    rows = {
        row.device_id: row
        for row in session.scalars(sa.select(Device).where(Device.user_id == user_id))
    }
    serials = [d.serial for d in devices]
    others = {
        row.device_id: row.user_id
        for row in session.scalars(
            sa.select(Device).where(Device.device_id.in_(serials), Device.user_id != user_id)
        )
    }
    for device in devices:
        if device.serial in others:
            # devices.device_id is unique (the seed's rule): one device, one owner. The
            # pipeline warns once per device (and counts it for /health); here, every poll.
            log.debug(
                "device %s is registered to user %d; not adding it to user %d",
                device.serial,
                others[device.serial],
                user_id,
            )
            result.conflicts.append(device.serial)
            result.claimed_by[device.serial] = others[device.serial]
            continue
        row = rows.get(device.serial)
        if row is None:
            row = Device(user_id=user_id, device_id=device.serial, renamed_by_user=False)
            session.add(row)
            rows[device.serial] = row
            result.added.append(device.serial)
        else:
            result.updated.append(device.serial)
        _fill_device(row, device, now)
        _sync_probes(session, row, device)
    if complete:
        present = set(serials)
        for serial, row in rows.items():
            if serial not in present and row.is_active is not False:
                row.is_active = False
                row.status = "offline"
                result.deactivated.append(serial)
    session.flush()
    return result


def _fill_device(row: Device, device: domain.Device, now: datetime) -> None:
    for key, value in device_values(device, now, renamed=row.renamed_by_user).items():
        setattr(row, key, value)


# The columns device_values() and probe_values() may write (the device sync's cache of
# rows holds these; tests/test_device_sync.py checks they cover what the functions give).
DEVICE_COLUMNS = (
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
PROBE_COLUMNS = (
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


# The fields of a cloud document that move with every reading. Their latest values are
# columns (last_value, last_time, last_seen), so ``raw`` leaves them out and stays the same
# from one poll to the next: rewriting it at every poll was a third of the pipeline's work.
PER_READING_FIELDS = frozenset({"value", "lastSeen", "lastTelemetrySaved"})


def lasting_fields(extra: Mapping[str, Any]) -> dict[str, Any]:
    """A document's fields but those that move with every reading (what ``raw`` keeps)."""
    return {k: v for k, v in extra.items() if k not in PER_READING_FIELDS}


def device_values(
    device: domain.Device, now: datetime, *, renamed: bool, raw: bool = True
) -> dict[str, Any]:
    """The ``devices`` columns a sync writes for ``device`` (the nickname only if not renamed;
    ``raw`` only if asked)."""
    serial = device.serial
    values: dict[str, Any] = {"cloud_label": _cut(device.label, 100, serial, "label")}
    if not renamed:
        values["nickname"] = _cut(device.label or device.name, 100, serial, "label")
    values.update(
        model=_cut(device.model, 50, serial, "model"),
        device_type=_cut(device.type, 20, serial, "type"),
        firmware=_cut(device.firmware, 50, serial, "firmware"),
        battery=device.battery,
        signal_dbm=device.signal_dbm,
        last_seen=device.last_seen or device.last_telemetry_saved,
        status="online" if device.is_online(now) else "offline",
        is_active=True,
    )
    if raw:
        values["raw"] = json_safe(lasting_fields(device.extra))
    return values


def _sync_probes(session: Session, row: Device, device: domain.Device) -> None:
    existing = {p.channel: p for p in row.probes}
    for probe in device.probes:
        probe_row = existing.get(probe.channel)
        if probe_row is None:
            probe_row = ProbeRow(channel=probe.channel)
            row.probes.append(probe_row)
        for key, value in probe_values(probe, device).items():
            setattr(probe_row, key, value)
    present = {p.channel for p in device.probes}
    for channel, probe_row in existing.items():
        if channel not in present:
            probe_row.connected = False


def probe_values(probe: domain.Probe, device: domain.Device, *, raw: bool = True) -> dict[str, Any]:
    """The ``probes`` columns a sync writes (the last value and time only while connected;
    ``raw`` only if asked)."""
    high, low = probe.alarm_high, probe.alarm_low
    values: dict[str, Any] = {
        "label": _cut(probe.label, 100, device.serial, f"probe {probe.channel} label"),
        "unit": probe.unit.value,
        "connected": probe.connected,
        "status": _cut(probe.status, 20, device.serial, f"probe {probe.channel} status"),
    }
    if probe.connected:
        values["last_value"] = probe.value
        values["last_time"] = (
            probe.last_telemetry_saved or device.last_telemetry_saved or device.last_seen
        )
    values.update(
        alarm_high_enabled=high.enabled if high else None,
        alarm_high_alarming=high.alarming if high else None,
        alarm_high_value=high.value if high else None,
        alarm_low_enabled=low.enabled if low else None,
        alarm_low_alarming=low.alarming if low else None,
        alarm_low_value=low.value if low else None,
    )
    if raw:
        values["raw"] = json_safe(lasting_fields(probe.extra))
    return values


# The longest serial a device row holds; a longer one is refused, never cut (cut serials
# of two devices could be one).
SERIAL_MAX: int = Device.__table__.c.device_id.type.length  # type: ignore[attr-defined]
_CUT_WARNED: set[tuple[str, str, int]] = set()  # (serial, field, hash of the text) warned of


# What the columns hold of a device's and a probe's text (devices.cloud_label, probes.label,
# grilling_session_probes.label...): cut once, where a poll enters the bridge.
_DEVICE_TEXT = {"label": 100, "model": 50, "type": 20, "firmware": 50, "status": 20}
_PROBE_TEXT = {"label": 100, "status": 20}


def fit_device(device: domain.Device) -> domain.Device:
    """The device with its text cut to what the database keeps (one warning per field)."""
    serial = device.serial
    changes: dict[str, Any] = {}
    for name, length in _DEVICE_TEXT.items():
        text = getattr(device, name)
        if text is not None and len(text) > length:
            changes[name] = _cut(text, length, serial, name)
    probes = device.probes
    if any(
        (p.label is not None and len(p.label) > 100)
        or (p.status is not None and len(p.status) > 20)
        for p in probes
    ):
        fitted = []
        for p in probes:
            cut: dict[str, Any] = {
                name: _cut(getattr(p, name), length, serial, f"probe {p.channel} {name}")
                for name, length in _PROBE_TEXT.items()
                if getattr(p, name) is not None and len(getattr(p, name)) > length
            }
            fitted.append(replace(p, **cut) if cut else p)
        changes["probes"] = tuple(fitted)
    return replace(device, **changes) if changes else device


def _cut(text: str | None, length: int, serial: str, what: str) -> str | None:
    """Cloud text cut to its column's length, with one warning per device, field and text."""
    if text is None or len(text) <= length:
        return text
    key = (serial, what, hash(text))
    if key not in _CUT_WARNED and len(_CUT_WARNED) < 10_000:
        _CUT_WARNED.add(key)
        log.warning(
            "device %s: %s is %d characters, cut to the %d the database keeps",
            serial,
            what,
            len(text),
            length,
        )
    return text[:length]


def json_safe(value: Any) -> Any:
    """A value JSON can hold: datetimes as ISO 8601, enums by value, non-finite floats as None."""
    kind = type(value)
    # The plain types first: every poll runs every cloud field through here.
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict or isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            # The leaves inline: a call per value is most of the cost of every poll's sync.
            leaf = type(v)
            if leaf is str or leaf is int or leaf is bool or v is None:
                out[str(k)] = v
            elif leaf is datetime:
                out[str(k)] = v.isoformat()
            else:
                out[str(k)] = json_safe(v)
        return out
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def find_device(session: Session, serial: str) -> Device | None:
    """The device a user means by ``serial``: spaces around it and letter case do not matter.

    Serials are kept as the cloud spells them (``10:06:1C:6F:47:70``); a user types
    ``10:06:1c:6f:47:70`` as well. The one place every command looks a serial up.
    """
    wanted = serial.strip()
    rows = list(
        session.scalars(sa.select(Device).where(sa.func.lower(Device.device_id) == wanted.lower()))
    )
    exact = [row for row in rows if row.device_id == wanted]
    if exact:
        return exact[0]
    return rows[0] if len(rows) == 1 else None


def device_serial(session: Session, serial: str) -> str:
    """The stored spelling of ``serial`` (see :func:`find_device`); as given, stripped, if none."""
    row = find_device(session, serial)
    return row.device_id if row is not None else serial.strip()


def rename_device(database: Database, serial: str, name: str | None) -> Device:
    """Give a device a name of its own; None or empty: follow the cloud's label again."""
    with database.transaction() as session:
        row = find_device(session, serial)
        if row is None:
            raise UsageError(f"no device with serial {serial.strip()!r}")
        if name and name.strip():
            if len(name.strip()) > 100:
                raise UsageError("name: at most 100 characters")
            row.nickname = name.strip()
            row.renamed_by_user = True
        else:
            row.nickname = row.cloud_label or row.device_id
            row.renamed_by_user = False
        return row


def transfer_device(session: Session, serial: str, new_owner: int) -> tuple[Device, int]:
    """Give a device (resold) to another user; returns the row and its previous owner.

    The old owner's history stays theirs: the readings stay under the serial, and
    their sessions and alerts keep their ``user_id`` (the alerts are no longer
    evaluated: a rule is judged only on a device its user owns). The user's own
    name for the device is theirs too: the device follows the cloud's label again.
    The caller ends a running session first (``sessions``; the store knows none).
    """
    row = find_device(session, serial)
    if row is None:
        raise UsageError(f"no device with serial {serial.strip()!r}")
    previous = row.user_id
    if previous == new_owner:
        raise UsageError(f"device {row.device_id} already belongs to that user")
    row.user_id = new_owner
    row.nickname = row.cloud_label or row.device_id
    row.renamed_by_user = False
    session.flush()
    return row, previous


def probe_marks(database: Database, user_id: int) -> list[tuple[str, int, datetime | None, bool]]:
    """Each probe of a user's devices: serial, channel, last stored time, connected."""
    with database.transaction() as db:
        rows = db.execute(
            sa.select(Device.device_id, ProbeRow.channel, ProbeRow.last_time, ProbeRow.connected)
            .join(ProbeRow, ProbeRow.device_id == Device.id)
            .where(Device.user_id == user_id)
        ).all()
    return [(serial, channel, last, bool(connected)) for serial, channel, last, connected in rows]


# ------------------------------------------------------------------------------ the daemon's sync


_DEVICES: sa.Table = Device.__table__  # type: ignore[assignment]
_PROBES: sa.Table = ProbeRow.__table__  # type: ignore[assignment]
_TOUCHED = "grillstats.device_sync"


@dataclass
class _Known:
    """One device row as this process last wrote (or read) it, with its probes."""

    id: int
    updated_at: datetime | None
    renamed: bool
    values: dict[str, Any]
    probes: dict[int, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    # The lasting cloud fields ``raw`` was last computed from, by channel (None: the device)
    sources: dict[int | None, dict[str, Any]] = field(default_factory=dict)


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
        """Upsert ``devices`` of one user, as :func:`sync_devices` does."""
        return self.sync_many(session, [SyncItem(user_id, devices, now, complete)])[0]

    def sync_many(self, session: Session, items: Sequence[SyncItem]) -> list[SyncResult]:
        """Several polls' devices (in order; one account may come twice), as ``sync`` each.

        One SELECT checks the rows of every account for changes by anyone else;
        the changed rows of all the polls are written at the end, one UPDATE per
        table and set of columns (a row changed twice is written once, last values).
        """
        pending = _Pending()
        stamps = self._stamps(session, {i.user_id for i in items if i.user_id in self._accounts})
        checked: set[int] = set()  # accounts whose rows this call already checked or wrote
        results: list[SyncResult] = []
        for item in items:
            self._watch(session, item.user_id)
            known = self._accounts.get(item.user_id)
            rows = None if item.user_id in checked else stamps.get(item.user_id, [])
            checked.add(item.user_id)
            if known is not None and self._fits(known, item.devices, item.complete, rows):
                self.fast += 1
                results.append(self._write(pending, known, item.devices, item.now))
                continue
            self.full += 1
            pending.flush(session)  # sync_devices reads the rows: what is pending goes first
            self._accounts.pop(item.user_id, None)
            results.append(
                sync_devices(
                    session, item.user_id, item.devices, now=item.now, complete=item.complete
                )
            )
            self._accounts[item.user_id] = _load(session, item.user_id)
        pending.flush(session)
        return results

    def forget(self, user_id: int | None = None) -> None:
        """Read the rows again at the next poll (of one account, or of all)."""
        if user_id is None:
            self._accounts.clear()
        else:
            self._accounts.pop(user_id, None)

    # ------------------------------------------------------------------ the fast path

    @staticmethod
    def _stamps(
        session: Session, user_ids: set[int]
    ) -> dict[int, list[tuple[int, str, datetime | None]]]:
        """The device rows' ids, serials and ``updated_at`` of some accounts (one SELECT)."""
        out: dict[int, list[tuple[int, str, datetime | None]]] = {uid: [] for uid in user_ids}
        if not user_ids:
            return out
        rows = session.execute(
            sa.select(
                _DEVICES.c.user_id, _DEVICES.c.id, _DEVICES.c.device_id, _DEVICES.c.updated_at
            ).where(_DEVICES.c.user_id.in_(sorted(user_ids)))
        )
        for user_id, row_id, serial, updated_at in rows:
            out[user_id].append((row_id, serial, updated_at))
        return out

    def _fits(
        self,
        known: dict[str, _Known],
        devices: Sequence[domain.Device],
        complete: bool,
        rows: list[tuple[int, str, datetime | None]] | None,
    ) -> bool:
        """True when the poll only changes values of rows this process wrote last.

        ``rows``: the account's device rows as the database has them; None when
        this transaction already checked or wrote them (``known`` is what they are).
        """
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
        if rows is None:
            return True
        if len(rows) != len(known):
            return False
        for row_id, serial, updated_at in rows:
            entry = known.get(serial)
            if entry is None or entry.id != row_id or entry.updated_at != updated_at:
                return False  # changed, added or removed by someone else
        return True

    def _write(
        self,
        pending: _Pending,
        known: dict[str, _Known],
        devices: Sequence[domain.Device],
        now: datetime,
    ) -> SyncResult:
        stamp = utcnow()  # what the models' onupdate would write
        for device in devices:
            entry = known[device.serial]
            values = device_values(device, now, renamed=entry.renamed, raw=False)
            _raw(entry.sources, None, device.extra, values)
            if changed := _changes(entry.values, values):
                entry.values.update(changed)
                entry.updated_at = stamp
                pending.add(_DEVICES, entry.id, changed, stamp)
            for probe in device.probes:
                probe_id, stored = entry.probes[probe.channel]
                values = probe_values(probe, device, raw=False)
                _raw(entry.sources, probe.channel, probe.extra, values)
                if changed := _changes(stored, values):
                    stored.update(changed)
                    pending.add(_PROBES, probe_id, changed, stamp)
        return SyncResult(updated=[d.serial for d in devices])

    # ------------------------------------------------------------------ rollbacks

    def _watch(self, session: Session, user_id: int) -> None:
        """If the transaction does not commit, what was written here never happened."""
        hook = rollback_hook(session, (_TOUCHED, id(self)), lambda: _Forget(self._accounts))
        hook.user_ids.add(user_id)


@dataclass
class _Forget:
    """Drops the cached rows of accounts whose writes were rolled back."""

    accounts: dict[int, Any]
    user_ids: set[int] = field(default_factory=set)

    def rolled_back(self) -> None:
        for uid in self.user_ids:
            self.accounts.pop(uid, None)


@dataclass(frozen=True, slots=True)
class SyncItem:
    """One poll's devices, for :meth:`DeviceSync.sync_many`."""

    user_id: int
    devices: Sequence[domain.Device]
    now: datetime
    complete: bool = True


class _Pending:
    """Row updates waiting to be written, by table and row id (later values win)."""

    def __init__(self) -> None:
        self._rows: dict[sa.Table, dict[int, dict[str, Any]]] = {}

    def add(self, table: sa.Table, row_id: int, values: dict[str, Any], stamp: datetime) -> None:
        row = self._rows.setdefault(table, {}).setdefault(row_id, {})
        row.update(values)
        row["updated_at"] = stamp

    def flush(self, session: Session) -> None:
        """One UPDATE per table and set of columns; nothing waits afterwards."""
        rows, self._rows = self._rows, {}
        for table, by_id in rows.items():
            groups: dict[tuple[str, ...], list[tuple[int, dict[str, Any]]]] = {}
            for row_id, values in by_id.items():
                groups.setdefault(tuple(values), []).append((row_id, values))
            for columns, group in groups.items():
                _update_rows(session, table, columns, group)


def _update_rows(
    session: Session,
    table: sa.Table,
    columns: tuple[str, ...],
    rows: list[tuple[int, dict[str, Any]]],
) -> None:
    """``UPDATE table SET columns WHERE id = ...`` for every row: one statement on
    PostgreSQL (:mod:`bulk`), an executemany elsewhere."""
    if bulk.supported(session):
        bulk.update_rows(
            session, table, columns, [(row_id, *(v[c] for c in columns)) for row_id, v in rows]
        )
        return
    statement = (
        sa.update(table)
        .where(table.c.id == sa.bindparam("b_id"))
        .values({c: sa.bindparam(c) for c in columns})
    )
    session.execute(statement, [{"b_id": row_id, **values} for row_id, values in rows])


def _raw(
    sources: dict[int | None, dict[str, Any]],
    key: int | None,
    extra: Mapping[str, Any],
    values: dict[str, Any],
) -> None:
    """Add ``raw`` to a row's ``values`` when its lasting fields moved since the last poll
    (only written if it differs from the row's: the first poll compares with the database)."""
    lasting = lasting_fields(extra)
    if sources.get(key) != lasting:
        sources[key] = lasting
        values["raw"] = json_safe(lasting)


def _changes(stored: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The columns whose values differ from the row's (only those are written)."""
    return {k: v for k, v in values.items() if stored.get(k, _UNSET) != v}


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
            values={c: getattr(row, c) for c in DEVICE_COLUMNS},
        )
        known[row.device_id] = by_id[row.id] = entry
    if by_id:
        query = sa.select(_PROBES).where(_PROBES.c.device_id.in_(list(by_id)))
        for row in session.execute(query):
            values = {c: getattr(row, c) for c in PROBE_COLUMNS}
            by_id[row.device_id].probes[row.channel] = (row.id, values)
    return known
