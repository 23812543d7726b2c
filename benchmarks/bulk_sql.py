"""Batched writes on PostgreSQL: SQLAlchemy constructs against psycopg2-rendered VALUES.

Decides how store/bulk.py builds its statements (issue 12): the same rows written
as (a) the hand-rendered ``VALUES`` text (``bulk.insert_rows`` / ``bulk.update_rows``),
(b) SQLAlchemy constructs (an ``INSERT ... ON CONFLICT`` executemany, which
SQLAlchemy 2 batches into multi-row VALUES; an ``UPDATE ... FROM (VALUES ...)`` built
with ``sa.values``), (c) a plain executemany UPDATE. Rows per second, best of N runs.

    PYTHONPATH=. .venv/bin/python benchmarks/bulk_sql.py [--url postgresql://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from grillstats_bridge.config import DatabaseConfig
from grillstats_bridge.store import bulk
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import Base, ProbeRow, ReadingRow
from grillstats_bridge.store.sql import upsert

READINGS: sa.Table = ReadingRow.__table__  # type: ignore[assignment]
PROBES: sa.Table = ProbeRow.__table__  # type: ignore[assignment]


def best(fn, runs: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for i in range(runs):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="postgresql+psycopg2://postgres@127.0.0.1/test")
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    admin = sa.create_engine(args.url, isolation_level="AUTOCOMMIT")
    name = f"grillstats_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(args.url).set(database=name)
    db = Database(DatabaseConfig(url=url.render_as_string(hide_password=False)))
    try:
        Base.metadata.create_all(db.engine)
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        n = args.rows
        cols = ("device_id", "probe", "time", "value", "unit")

        def rows(run: int, k: int) -> list[tuple[object, ...]]:
            base = t0 + timedelta(days=run + 10 * k)
            return [
                (f"D{i % 100}", i % 4, base + timedelta(seconds=i), 200.5, "F") for i in range(n)
            ]

        def rendered(run: int) -> None:
            with db.transaction() as s:
                bulk.insert_rows(s, READINGS, cols, rows(run, 0), skip_conflicts_on=cols[:3])

        def construct(run: int) -> None:
            with db.transaction() as s:
                upsert(
                    s,
                    READINGS,
                    [dict(zip(cols, r, strict=True)) for r in rows(run, 1)],
                    keys=cols[:3],
                )

        ins_a = best(rendered, args.runs)
        ins_b = best(construct, args.runs)
        # updates: probe-like rows keyed by id
        with db.transaction() as s:
            s.execute(
                sa.text(
                    "CREATE TABLE upd (id integer primary key, label text,"
                    " v double precision, t timestamptz, raw json)"
                )
            )
            s.execute(
                sa.text(
                    "INSERT INTO upd SELECT g, 'x', 0, now(), '{}' FROM generate_series(1, :n) g"
                ),
                {"n": n},
            )
        meta = sa.MetaData()
        upd = sa.Table("upd", meta, autoload_with=db.engine)
        ucols = ("label", "v", "t", "raw")

        def urows(run: int) -> list[tuple[object, ...]]:
            return [
                (i, f"probe {run}", float(i + run), t0 + timedelta(seconds=run), {"a": run})
                for i in range(1, n + 1)
            ]

        def u_rendered(run: int) -> None:
            with db.transaction() as s:
                bulk.update_rows(s, upd, ucols, urows(run))

        def u_construct(run: int) -> None:
            values = sa.values(
                sa.column("b_id", sa.Integer),
                *(sa.column(c, upd.c[c].type) for c in ucols),
                name="v",
            ).data(urows(run))
            stmt = (
                sa.update(upd)
                .where(upd.c.id == values.c.b_id)
                .values({c: sa.cast(values.c[c], upd.c[c].type) for c in ucols})
            )
            with db.transaction() as s:
                s.execute(stmt)

        def u_many(run: int) -> None:
            stmt = (
                sa.update(upd)
                .where(upd.c.id == sa.bindparam("b_id"))
                .values({c: sa.bindparam(c) for c in ucols})
            )
            with db.transaction() as s:
                s.execute(stmt, [dict(zip(("b_id", *ucols), r, strict=True)) for r in urows(run)])

        up_a = best(u_rendered, args.runs)
        up_b = best(u_construct, args.runs)
        up_c = best(u_many, args.runs)
        with db.engine.connect() as c:
            got = c.execute(
                sa.text("select count(*) from upd where label = :l"),
                {"l": f"probe {args.runs - 1}"},
            ).scalar()
        assert got == n, got
        print(f"{n} rows, best of {args.runs} (rows/s):")
        print(
            f"  insert readings: rendered VALUES {n / ins_a:,.0f}, SQLAlchemy upsert"
            f" {n / ins_b:,.0f} ({ins_b / ins_a:.2f}x the time)"
        )
        print(
            f"  update by id: rendered VALUES {n / up_a:,.0f}, sa.values FROM {n / up_b:,.0f}"
            f" ({up_b / up_a:.2f}x), executemany {n / up_c:,.0f} ({up_c / up_a:.2f}x)"
        )
    finally:
        db.dispose()
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
