"""Cost of the session service per poll on a real database (run by hand).

    python benchmarks/sessions_service.py                       # a temporary SQLite file
    python benchmarks/sessions_service.py --url postgresql+psycopg2://postgres@127.0.0.1:5432/test

With a PostgreSQL URL a fresh database is created next to the given one and dropped
afterwards. The workload is that of ``sessions_tracker.py`` (half the devices cooking,
accounts of ten devices, a push every 15 s); each poll runs ``SessionService.process``
in its own transaction, as the daemon does (readings are not stored here: that is the
readings store's cost, not the sessions').
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa
from sessions_tracker import build
from sqlalchemy.engine import make_url

from grillstats_bridge.config import DatabaseConfig, SessionsConfig
from grillstats_bridge.sessions.service import SessionService
from grillstats_bridge.store import migrate
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import Device, User


def fresh_postgresql(url: str) -> tuple[str, sa.Engine, str]:
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    name = f"grillstats_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    return make_url(url).set(database=name).render_as_string(hide_password=False), admin, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--per-account", type=int, default=10)
    parser.add_argument(
        "--batch", type=int, default=1, help="polls per transaction (process_polls)"
    )
    args = parser.parse_args()

    admin: sa.Engine | None = None
    name = ""
    tmp = tempfile.TemporaryDirectory()
    url = args.url or f"sqlite:///{tmp.name}/bench.db"
    if url.startswith("postgresql"):
        url, admin, name = fresh_postgresql(url)
    database = Database(DatabaseConfig(url=url))
    try:
        migrate.upgrade(database)
        polls, count = build(args.devices, args.hours, args.per_account)
        with database.transaction() as db:
            for account in range((args.devices + args.per_account - 1) // args.per_account):
                user = User(id=account + 1, email=f"u{account}@example.com", password_hash="x")
                db.add(user)
            db.flush()
            for d in range(args.devices):
                db.add(Device(user_id=d // args.per_account + 1, device_id=f"DEV-{d}"))
        service = SessionService(SessionsConfig())
        whole: list[float] = []
        inside: list[float] = []
        for i in range(0, len(polls), args.batch):
            t = time.perf_counter()
            with database.transaction() as db:
                # The daemon's poll transaction is already open (it stored the readings):
                # time process() apart from the checkout, BEGIN and COMMIT it shares.
                db.execute(sa.text("SELECT 1"))
                u = time.perf_counter()
                service.process_polls(db, polls[i : i + args.batch])
                inside.append(time.perf_counter() - u)
            whole.append(time.perf_counter() - t)
        print(
            f"{database.dialect}: {count:,} readings, {len(polls):,} polls of "
            f"{args.per_account} devices, {args.batch} per transaction"
        )
        for label, times in (("process() alone", inside), ("whole transaction", whole)):
            total = sum(times)
            times.sort()
            print(
                f"  {label}: {total:.2f} s, {count / total:,.0f} readings/s; per transaction "
                f"p50 {statistics.median(times) * 1000:.2f} ms, "
                f"p99 {times[int(len(times) * 0.99)] * 1000:.2f} ms"
            )
    finally:
        database.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()
        tmp.cleanup()


if __name__ == "__main__":
    main()
