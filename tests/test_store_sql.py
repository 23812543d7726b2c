"""The store's shared SQL helpers on both dialects: upsert, rollback hooks, the bulk UPDATE."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from grillstats_bridge.config import DatabaseConfig
from grillstats_bridge.store import bulk
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import Device, ProbeRow, ReadingRow, User
from grillstats_bridge.store.sql import rollback_hook, upsert
from tests.fixtures.db import truncate_all

READINGS: sa.Table = ReadingRow.__table__  # type: ignore[assignment]
PROBES: sa.Table = ProbeRow.__table__  # type: ignore[assignment]
T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
# Quotes, placeholders, backslashes, SQL and non-ASCII: stored as given, never interpreted.
HOSTILE = "O'Brien's \"brisket\" %s %(x)s \\' ); DROP TABLE readings; -- ° 🔥"


def _reading(time: datetime, value: float, unit: str = "F") -> dict[str, object]:
    return {"device_id": "D1", "probe": 1, "time": time, "value": value, "unit": unit}


def test_upsert_without_update_columns_keeps_the_stored_row(database: Database) -> None:
    with database.transaction() as db:
        upsert(db, READINGS, [_reading(T0, 100.0)], keys=["device_id", "probe", "time"])
        upsert(
            db,
            READINGS,
            [_reading(T0, 999.0), _reading(T0 + timedelta(seconds=15), 101.0)],
            keys=["device_id", "probe", "time"],
        )
    with database.transaction() as db:
        got = db.execute(sa.select(ReadingRow.time, ReadingRow.value).order_by(ReadingRow.time))
        assert [v for _, v in got] == [100.0, 101.0]


def test_upsert_updates_only_the_named_columns(database: Database) -> None:
    with database.transaction() as db:
        user = User(email="u@example.com", password_hash="x")
        db.add(user)
        db.flush()
        device = Device(device_id="D1", user_id=user.id, nickname="Pit")
        db.add(device)
        db.flush()
        row = {"device_id": device.id, "channel": 1, "label": "Meat", "unit": "F"}
        upsert(db, PROBES, [row], keys=["device_id", "channel"])
        changed = {**row, "label": HOSTILE, "unit": "C"}
        upsert(db, PROBES, [changed], keys=["device_id", "channel"], update=["label"])
    with database.transaction() as db:
        (probe,) = db.scalars(sa.select(ProbeRow))
        assert (probe.label, probe.unit) == (HOSTILE, "F")


def test_upsert_of_one_key_twice_leaves_what_one_row_at_a_time_would(database: Database) -> None:
    """In one call: without update columns the first row stays, with them the last wins
    (PostgreSQL writes the call as one INSERT, which could not update a row twice)."""
    keys = ["device_id", "probe", "time"]
    later = T0 + timedelta(seconds=15)
    with database.transaction() as db:
        upsert(db, READINGS, [_reading(T0, 1.0), _reading(T0, 2.0)], keys=keys)
        upsert(
            db,
            READINGS,
            [_reading(later, 3.0), _reading(later, 4.0, "C"), _reading(later, 5.0)],
            keys=keys,
            update=["value", "unit"],
        )
    with database.transaction() as db:
        got = db.execute(sa.select(ReadingRow.value, ReadingRow.unit).order_by(ReadingRow.time))
        assert [tuple(r) for r in got] == [(1.0, "F"), (5.0, "F")]


def test_upsert_of_rows_with_different_columns(database: Database) -> None:
    """Rows that name their columns in another order, or other columns, are written too."""
    first = _reading(T0, 1.0)
    reordered = dict(reversed(list(_reading(T0 + timedelta(seconds=15), 2.0).items())))
    with database.transaction() as db:
        upsert(db, READINGS, [first, reordered], keys=["device_id", "probe", "time"])
    with database.transaction() as db:
        got = db.execute(sa.select(ReadingRow.value, ReadingRow.unit).order_by(ReadingRow.time))
        assert [tuple(r) for r in got] == [(1.0, "F"), (2.0, "F")]


@dataclass
class _Counter:
    calls: list[str] = field(default_factory=list)

    def rolled_back(self) -> None:
        self.calls.append("rolled back")


def test_a_rollback_hook_runs_once_when_the_transaction_does_not_commit(
    database: Database,
) -> None:
    counter = _Counter()
    with pytest.raises(RuntimeError), database.transaction() as db:
        assert rollback_hook(db, "k", lambda: counter) is counter
        assert rollback_hook(db, "k", _Counter) is counter  # one per key per transaction
        with db.begin_nested():  # a savepoint's release is not the commit
            upsert(db, READINGS, [_reading(T0, 1.0)], keys=["device_id", "probe", "time"])
        raise RuntimeError("the transaction fails")
    assert counter.calls == ["rolled back"]


def test_a_commit_discards_the_rollback_hook(database: Database) -> None:
    counter = _Counter()
    with database.session() as db:
        with db.begin():
            rollback_hook(db, "k", lambda: counter)
        with db.begin():  # a later transaction on the same session rolls back
            rollback_hook(db, "other", _Counter)
            db.rollback()
    assert counter.calls == []


# The one-statement UPDATE is PostgreSQL's; SQLite uses an executemany.
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_bulk_update_writes_hostile_values_as_data(database: Database) -> None:
    with database.transaction() as db:
        user = User(email="u@example.com", password_hash="x")
        db.add(user)
        db.flush()
        device = Device(device_id="D1", user_id=user.id, nickname="Pit")
        db.add(device)
        db.flush()
        probes = [ProbeRow(device_id=device.id, channel=c, label="x", unit="F") for c in (1, 2)]
        db.add_all(probes)
        db.flush()
        ids = [p.id for p in probes]
    with database.transaction() as db:
        assert bulk.supported(db)
        bulk.update_rows(
            db,
            PROBES,
            ("label", "raw"),
            [(ids[0], HOSTILE, {"k": HOSTILE}), (ids[1], None, None)],
        )
    with database.transaction() as db:
        got = {p.id: (p.label, p.raw) for p in db.scalars(sa.select(ProbeRow))}
        assert got == {ids[0]: (HOSTILE, {"k": HOSTILE}), ids[1]: (None, None)}
        assert db.scalar(sa.select(sa.func.count()).select_from(READINGS)) == 0


@pytest.fixture
def pg_database(pg_url: str) -> Iterator[Database]:
    """An empty PostgreSQL database: bulk's one-statement batches are PostgreSQL's."""
    database = Database(DatabaseConfig(url=pg_url))
    truncate_all(database)
    yield database
    database.dispose()


def test_bulk_rows_are_read_back_exactly_as_written(pg_database: Database) -> None:
    """bulk writes the usual types itself (psycopg2's quoting per value was most of its
    time): strings with quotes, backslashes and placeholders, negative and large numbers,
    non-finite floats, times with microseconds and other offsets (nulls: the bulk update
    test above)."""
    database = pg_database
    with database.transaction() as db:
        assert bulk.supported(db)
    east = timezone(timedelta(hours=5, minutes=30))
    rows = [
        ("O'B \\' %s ); --°🔥", -3, T0.replace(microsecond=123456), -0.1, "F"),
        ("back\\slash\\", 32767, datetime(2026, 6, 1, 17, 31, 2, 5, tzinfo=east), 1e300, "C"),
        ("''", 0, T0 + timedelta(seconds=1), float("nan"), "%"),
        ("D1", 1, T0 + timedelta(seconds=2), float("-inf"), "F"),
        ("D1", 1, T0 + timedelta(seconds=3), -0.0, "F"),
        ("D1", 1, T0 + timedelta(seconds=4), 5e-324, "F"),
    ]
    columns = ("device_id", "probe", "time", "value", "unit")
    with database.transaction() as db:
        bulk.insert_rows(db, READINGS, columns, rows, keys=("device_id", "probe", "time"))
    with database.transaction() as db:
        got = db.execute(sa.select(*(READINGS.c[c] for c in columns)).order_by(READINGS.c.id))
        back = [tuple(r) for r in got]
    assert len(back) == len(rows)
    for written, read in zip(rows, back, strict=True):
        assert read[:3] == written[:3] and read[4] == written[4]
        value = written[3]
        if isinstance(value, float) and math.isnan(value):
            assert isinstance(read[3], float) and math.isnan(read[3])
        else:
            assert read[3] == value


def test_a_nul_in_a_bulk_string_is_refused_as_psycopg2_refuses_it(pg_database: Database) -> None:
    with pg_database.transaction() as db:
        assert bulk.supported(db)
        with pytest.raises(ValueError):
            bulk.insert_rows(
                db,
                READINGS,
                ("device_id", "probe", "time", "value", "unit"),
                [("D\x001", 1, T0, 1.0, "F")],
                keys=("device_id", "probe", "time"),
            )
