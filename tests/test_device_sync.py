"""The daemon's device sync (``DeviceSync``) leaves the rows as ``sync_devices`` does."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from grillstats_bridge.config import Config
from grillstats_bridge.domain import Device as CloudDevice
from grillstats_bridge.domain import Probe, utcnow
from grillstats_bridge.store import users
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.devices import (
    DeviceSync,
    SyncItem,
    SyncResult,
    rename_device,
    sync_devices,
)
from grillstats_bridge.store.models import Device, ProbeRow
from tests.sample_devices import MEAT, NODE, SIGNALS, sample_devices

Sync = Callable[..., SyncResult]
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=utcnow().tzinfo)


def add_user(database: Database, config: Config, email: str = "cook@example.com") -> int:
    with database.transaction() as session:
        return users.add_user(session, email, "bridge-password-1", config.security).id


def unplug(device: CloudDevice, channel: int) -> CloudDevice:
    probes = tuple(
        dataclasses.replace(p, value=None, status="NO PROBE") if p.channel == channel else p
        for p in device.probes
    )
    return dataclasses.replace(device, probes=probes)


def without(devices: Sequence[CloudDevice], serial: str) -> list[CloudDevice]:
    return [d for d in devices if d.serial != serial]


def with_probe(devices: Sequence[CloudDevice], serial: str, channel: int) -> list[CloudDevice]:
    out = []
    for d in devices:
        if d.serial == serial:
            extra = Probe(serial=serial, channel=channel, label="New", value=50.0)
            d = dataclasses.replace(d, probes=(*d.probes, extra))
        out.append(d)
    return out


def snapshot(database: Database) -> list[tuple[Any, ...]]:
    """Every device and probe row, without ids and timestamps of when they were written."""
    skip = {"id", "device_id", "user_id", "created_at", "updated_at"}
    with database.transaction() as db:
        devices = {d.id: d for d in db.scalars(sa.select(Device).order_by(Device.device_id))}
        out: list[tuple[Any, ...]] = []
        for d in devices.values():
            cols = {c.key: getattr(d, c.key) for c in Device.__table__.columns} | {
                "user": d.user_id
            }
            out.append(
                (d.device_id, sorted((k, repr(v)) for k, v in cols.items() if k not in skip))
            )
        for p in db.scalars(sa.select(ProbeRow).order_by(ProbeRow.device_id, ProbeRow.channel)):
            cols = {c.key: getattr(p, c.key) for c in ProbeRow.__table__.columns}
            out.append(
                (
                    devices[p.device_id].device_id,
                    sorted((k, repr(v)) for k, v in cols.items() if k not in skip),
                )
            )
        return out


def steps() -> list[tuple[datetime, list[CloudDevice], bool]]:
    """A sequence of polls: values move, a probe comes and goes, devices vanish and return."""
    at = [T0 + timedelta(seconds=15 * i) for i in range(12)]
    first = list(sample_devices(at[0]))
    moved = list(sample_devices(at[1], step=1))
    return [
        (at[0], first, True),
        (at[1], moved, True),
        (at[2], moved, True),  # nothing new
        (at[3], [unplug(d, 1) if d.serial == SIGNALS else d for d in moved], True),
        (at[4], list(sample_devices(at[4], step=2)), True),
        (at[5], without(sample_devices(at[5], step=3), MEAT), True),  # MEAT deactivated
        (at[6], without(sample_devices(at[6], step=4), NODE), False),  # incomplete: kept
        (at[7], list(sample_devices(at[7], step=5)), True),  # MEAT back
        (at[8], with_probe(sample_devices(at[8], step=6), NODE, 3), True),
        (at[9], with_probe(sample_devices(at[9], step=7), NODE, 3), True),
        (at[10] + timedelta(hours=2), list(sample_devices(at[9], step=7)), True),  # offline
        (at[11] + timedelta(hours=2), list(sample_devices(at[11] + timedelta(hours=2))), True),
    ]


def run(database: Database, user_id: int, sync: Sync, *, rename_at: int = 3) -> list[Any]:
    """Each step in its own transaction; a rename between steps; snapshots after each."""
    shots = []
    for i, (now, devices, complete) in enumerate(steps()):
        if i == rename_at:
            rename_device(database, SIGNALS, "My smoker")
        with database.transaction() as db:
            result = sync(db, user_id, devices, now=now, complete=complete)
        shots.append((dataclasses.asdict(result), snapshot(database)))
    return shots


def clear_devices(database: Database) -> None:
    with database.transaction() as db:
        db.execute(sa.delete(ProbeRow))
        db.execute(sa.delete(Device))


@contextmanager
def statements(database: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.startswith(("SAVEPOINT", "RELEASE", "BEGIN")):
            seen.append(statement.split()[0])

    event.listen(database.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(database.engine, "before_cursor_execute", count)


def test_the_same_rows_as_sync_devices(database: Database, config: Config) -> None:
    user_id = add_user(database, config)
    expected = run(database, user_id, sync_devices)
    clear_devices(database)
    device_sync = DeviceSync()
    assert run(database, user_id, device_sync.sync) == expected
    assert device_sync.fast >= 5  # most polls were written from memory
    assert device_sync.full >= 5  # the new, gone and renamed ones were not


def test_a_poll_that_moves_values_takes_three_statements(
    database: Database, config: Config
) -> None:
    user_id = add_user(database, config)
    device_sync = DeviceSync()
    with database.transaction() as db:
        device_sync.sync(db, user_id, sample_devices(T0), now=T0)
    later = T0 + timedelta(seconds=15)
    with statements(database) as seen, database.transaction() as db:
        device_sync.sync(db, user_id, sample_devices(later, step=1), now=later)
    # One SELECT to notice changes made elsewhere, one UPDATE of devices, one of probes.
    assert seen == ["SELECT", "UPDATE", "UPDATE"]


def test_many_polls_in_one_transaction_leave_the_rows_of_one_at_a_time(
    database: Database, config: Config
) -> None:
    """Polls batched in a transaction (one account twice, a column set changing in between,
    another account's first poll): the rows end up as after one sync per transaction."""
    one = add_user(database, config, "one@example.com")
    two = add_user(database, config, "two@example.com")
    signals, *rest = sample_devices(T0)
    percent = dataclasses.replace(signals, extra={"note": "50% off", "quote": "it's"})
    polls = [
        [(one, [signals], T0)],
        [(one, [percent], T0), (two, rest, T0)],  # '%' and a quote through the fast path
        [
            (one, list(sample_devices(T0 + timedelta(seconds=15), step=1))[:1], T0),
            (two, list(sample_devices(T0 + timedelta(seconds=15), step=1))[1:], T0),
            (one, [unplug(sample_devices(T0 + timedelta(seconds=30), step=2)[0], 2)], T0),
            (two, list(sample_devices(T0 + timedelta(seconds=30), step=2))[1:], T0),
        ],
    ]
    expected = []
    for batch in polls:
        for user_id, devices, now in batch:
            with database.transaction() as db:
                sync_devices(db, user_id, devices, now=now)
        expected.append(snapshot(database))
    clear_devices(database)
    device_sync = DeviceSync()
    shots = []
    for batch in polls:
        with database.transaction() as db:
            device_sync.sync_many(db, [SyncItem(u, d, now) for u, d, now in batch])
        shots.append(snapshot(database))
    assert shots == expected
    assert (device_sync.full, device_sync.fast) == (2, 5)  # each account's first: sync_devices


def test_many_polls_take_one_select_and_one_update_per_table(
    database: Database, config: Config
) -> None:
    owners = [add_user(database, config, f"cook{n}@example.com") for n in range(3)]
    devices = sample_devices(T0)
    device_sync = DeviceSync()
    with database.transaction() as db:
        device_sync.sync_many(
            db, [SyncItem(u, [d], T0) for u, d in zip(owners, devices, strict=False)]
        )
    later = T0 + timedelta(seconds=15)
    moved = sample_devices(later, step=1)
    with statements(database) as seen, database.transaction() as db:
        results = device_sync.sync_many(
            db,
            [SyncItem(u, [d], later) for u, d in zip(owners, moved, strict=False)]
            + [SyncItem(owners[0], [moved[0]], later)],  # the same poll again: nothing new
        )
    assert seen == ["SELECT", "UPDATE", "UPDATE"]
    assert [r.updated for r in results] == [[d.serial] for d in [*moved[:3], moved[0]]]


def test_a_full_sync_in_a_batch_sees_what_the_batch_wrote(
    database: Database, config: Config
) -> None:
    """An account that needs sync_devices (a new probe) after a poll of its own in the same
    transaction: the first poll's values are written before sync_devices reads the rows."""
    user_id = add_user(database, config)
    device_sync = DeviceSync()
    with database.transaction() as db:
        device_sync.sync(db, user_id, sample_devices(T0), now=T0)
    later = T0 + timedelta(seconds=15)
    moved = list(sample_devices(later, step=1))
    grown = with_probe(moved, NODE, 3)
    with database.transaction() as db:
        device_sync.sync_many(
            db, [SyncItem(user_id, moved, later), SyncItem(user_id, grown, later)]
        )
    batched = snapshot(database)
    clear_devices(database)
    for devices, now in ((sample_devices(T0), T0), (moved, later), (grown, later)):
        with database.transaction() as db:
            sync_devices(db, user_id, devices, now=now)
    assert batched == snapshot(database)


def test_an_unchanged_poll_writes_nothing(database: Database, config: Config) -> None:
    user_id = add_user(database, config)
    device_sync = DeviceSync()
    with database.transaction() as db:
        device_sync.sync(db, user_id, sample_devices(T0), now=T0)
    before = snapshot(database)
    with database.engine.connect() as conn:
        stamps = conn.execute(sa.select(ProbeRow.id, ProbeRow.updated_at)).all()
    with statements(database) as seen, database.transaction() as db:
        device_sync.sync(db, user_id, sample_devices(T0), now=T0)
    assert seen == ["SELECT"]
    assert snapshot(database) == before
    with database.engine.connect() as conn:
        assert conn.execute(sa.select(ProbeRow.id, ProbeRow.updated_at)).all() == stamps


def test_a_rolled_back_poll_is_written_again(database: Database, config: Config) -> None:
    user_id = add_user(database, config)
    device_sync = DeviceSync()
    with database.transaction() as db:
        device_sync.sync(db, user_id, sample_devices(T0), now=T0)
    # Only a probe's value moves: its device row is not written, so nothing in the
    # devices table tells that the transaction was lost.
    first, *rest = sample_devices(T0)
    hotter = dataclasses.replace(first.probes[0], value=200.0)
    moved = [dataclasses.replace(first, probes=(hotter, *first.probes[1:])), *rest]
    with pytest.raises(RuntimeError), database.transaction() as db:
        device_sync.sync(db, user_id, moved, now=T0)
        raise RuntimeError("the rest of the pipeline failed")
    with database.transaction() as db:
        device_sync.sync(db, user_id, moved, now=T0)
    with database.transaction() as db:
        value = db.scalar(
            sa.select(ProbeRow.last_value)
            .join(Device, Device.id == ProbeRow.device_id)
            .where(Device.device_id == SIGNALS, ProbeRow.channel == 1)
        )
    assert value == 200.0


def test_rows_changed_elsewhere_are_read_again(database: Database, config: Config) -> None:
    user_id = add_user(database, config)
    device_sync = DeviceSync()
    with database.transaction() as db:
        device_sync.sync(db, user_id, sample_devices(T0), now=T0)
    # Someone deletes a device (and so its probes), another is deactivated by hand.
    with database.transaction() as db:
        db.execute(sa.delete(Device).where(Device.device_id == MEAT))
        db.execute(
            sa.update(Device)
            .where(Device.device_id == NODE)
            .values(is_active=False, updated_at=utcnow())
        )
    later = T0 + timedelta(seconds=15)
    with database.transaction() as db:
        result = device_sync.sync(db, user_id, sample_devices(later, step=1), now=later)
    assert result.added == [MEAT]
    with database.transaction() as db:
        rows = {d.device_id: d for d in db.scalars(sa.select(Device))}
        assert rows[NODE].is_active is True
        assert [p.channel for p in rows[MEAT].probes] == [1]


def test_a_serial_of_another_user_stays_a_conflict(database: Database, config: Config) -> None:
    first = add_user(database, config, "one@example.com")
    second = add_user(database, config, "two@example.com")
    device_sync = DeviceSync()
    devices = sample_devices(T0)
    with database.transaction() as db:
        device_sync.sync(db, first, devices[:1], now=T0)
    for _ in range(2):
        with database.transaction() as db:
            result = device_sync.sync(db, second, devices, now=T0)
        assert result.conflicts == [SIGNALS]
    with database.transaction() as db:
        owner = db.scalar(sa.select(Device.user_id).where(Device.device_id == SIGNALS))
    assert owner == first


def test_the_cached_columns_cover_everything_a_sync_writes() -> None:
    """The device sync compares and writes only DEVICE_COLUMNS / PROBE_COLUMNS."""
    from grillstats_bridge.store.devices import (
        DEVICE_COLUMNS,
        PROBE_COLUMNS,
        device_values,
        probe_values,
    )

    now = utcnow()
    for device in sample_devices(now):
        assert set(device_values(device, now, renamed=False)) <= set(DEVICE_COLUMNS)
        for probe in device.probes:
            assert set(probe_values(probe, device)) <= set(PROBE_COLUMNS)
    assert set(DEVICE_COLUMNS) <= set(Device.__table__.c.keys())
    assert set(PROBE_COLUMNS) <= set(ProbeRow.__table__.c.keys())


def cloud_poll(at: datetime, value: float, minimum: float) -> list[CloudDevice]:
    """The sample devices with cloud documents: the Signals' probe 1 reads ``value``."""
    out = []
    for d in sample_devices(T0):
        if d.serial == SIGNALS:
            probes = tuple(
                dataclasses.replace(
                    p,
                    value=value,
                    last_telemetry_saved=at,
                    extra={"value": value, "lastTelemetrySaved": at, "minimum": minimum},
                )
                if p.channel == 1
                else p
                for p in d.probes
            )
            extra = {"lastSeen": at, "lastTelemetrySaved": at, "wifi_stength": -52}
            d = dataclasses.replace(d, last_seen=at, probes=probes, extra=extra)
        out.append(d)
    return out


def test_raw_keeps_the_lasting_fields_and_is_written_only_when_they_change(
    database: Database, config: Config
) -> None:
    """``raw`` leaves out what moves with every reading (its columns hold it): a poll that
    moves only those writes no ``raw``; one that moves another field writes it."""
    user_id = add_user(database, config)
    device_sync = DeviceSync()
    written: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("UPDATE"):
            written.append(statement)

    def rows() -> tuple[Any, Any, Any]:
        with database.transaction() as db:
            device = db.scalars(sa.select(Device).where(Device.device_id == SIGNALS)).one()
            probe = next(p for p in device.probes if p.channel == 1)
            return device.raw, probe.raw, probe.last_value

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        for n, (value, minimum) in enumerate([(70.0, 60.0), (71.0, 60.0), (72.0, 59.0)]):
            at = T0 + timedelta(seconds=15 * n)
            with database.transaction() as db:
                device_sync.sync(db, user_id, cloud_poll(at, value, minimum), now=at)
            if n == 0:
                assert rows() == ({"wifi_stength": -52}, {"minimum": 60.0}, 70.0)
                written.clear()
            elif n == 1:
                assert rows() == ({"wifi_stength": -52}, {"minimum": 60.0}, 71.0)
                assert written and not any("raw" in s for s in written)
                written.clear()
            else:
                assert rows() == ({"wifi_stength": -52}, {"minimum": 59.0}, 72.0)
                assert sum("raw" in s for s in written) == 1  # the probe's, not the device's
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
    assert device_sync.fast == 2
