"""``db``: migrations and the connection-pool test."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa

from grillstats_bridge.cli.common import Context, add_command, add_group, positive_int
from grillstats_bridge.errors import UsageError
from grillstats_bridge.store import migrate
from grillstats_bridge.store.db import Database, safe_url


def register(sub: Any) -> None:
    db = add_group(sub, "db", "database migrations and pool checks")
    p = add_command(db, "upgrade", _upgrade, "migrate the database up (default: to head)")
    p.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    p = add_command(db, "downgrade", _downgrade, "migrate the database down to a revision")
    p.add_argument("revision", help="target revision, e.g. base or -1")
    add_command(db, "current", _current, "show the database's revision and the newest one")
    add_command(db, "history", _history, "list every migration")
    p = add_command(db, "revision", _revision, "create a new migration script (for developers)")
    p.add_argument("-m", "--message", required=True, help="what the migration does")
    p.add_argument(
        "--autogenerate", action="store_true", help="fill it from the difference to the models"
    )
    p = add_command(
        db,
        "pool-test",
        _pool_test,
        "run concurrent queries and show that pooled connections are reused and returned",
    )
    p.add_argument("--queries", type=positive_int, default=200, help="queries to run (default 200)")
    p.add_argument(
        "--threads", type=positive_int, default=20, help="concurrent threads (default 20)"
    )


def _upgrade(args: argparse.Namespace, ctx: Context) -> int:
    database = ctx.database(require_head=False)
    before = migrate.current_revision(database)
    migrate.upgrade(database, args.revision)
    after = migrate.current_revision(database)
    where = safe_url(database.url)
    if before == after:
        print(f"{where}: already at {after or 'base'}")
    else:
        print(f"{where}: upgraded {before or 'base'} -> {after}")
    return 0


def _downgrade(args: argparse.Namespace, ctx: Context) -> int:
    database = ctx.database(require_head=False)
    before = migrate.current_revision(database)
    migrate.downgrade(database, args.revision)
    after = migrate.current_revision(database)
    print(f"{safe_url(database.url)}: downgraded {before or 'base'} -> {after or 'base'}")
    return 0


def _current(args: argparse.Namespace, ctx: Context) -> int:
    database = ctx.database(require_head=False)
    current, head = migrate.current_revision(database), migrate.head_revision()
    state = "up to date" if current == head else "needs 'grillstats-bridge db upgrade'"
    print(f"database: {safe_url(database.url)}")
    print(f"current:  {current or 'base (empty)'}")
    print(f"head:     {head}  ({state})")
    return 0 if current == head else 1


def _history(args: argparse.Namespace, ctx: Context) -> int:
    migrate.history(ctx.database(require_head=False), sys.stdout)
    return 0


def _revision(args: argparse.Namespace, ctx: Context) -> int:
    if not args.message.strip():
        raise UsageError("--message: must not be empty")
    migrate.revision(ctx.database(require_head=False), args.message, args.autogenerate, sys.stdout)
    return 0


def _pool_test(args: argparse.Namespace, ctx: Context) -> int:
    """What the seed's test_connection_pool.py does, as a command."""
    database = ctx.database(require_head=False)
    cfg = ctx.config.database
    print(f"database: {safe_url(database.url)} ({database.dialect})")
    print(
        f"pool settings: pool_size={cfg.pool_size} max_overflow={cfg.max_overflow} "
        f"pool_recycle={cfg.pool_recycle} pool_pre_ping={cfg.pool_pre_ping} "
        f"pool_timeout={cfg.pool_timeout}"
    )
    if database.dialect == "postgresql":
        with database.engine.connect() as conn:
            timeout = conn.execute(sa.text("SHOW statement_timeout")).scalar_one()
            encoding = conn.execute(sa.text("SHOW client_encoding")).scalar_one()
        print(f"pooled connection: statement_timeout={timeout} client_encoding={encoding}")

    report = run_pool_test(database, args.queries, args.threads)
    for line in report["samples"]:
        print(line)
    status = database.pool_status()
    print(
        f"done: {args.queries} queries on {args.threads} threads in {report['seconds']:.2f}s; "
        f"{report['distinct']} connections served them "
        f"({report['opened']} opened during the run, the others already in the pool)"
    )
    print(
        f"pool now: size={status.size} checked_in={status.checked_in} "
        f"checked_out={status.checked_out} overflow={status.overflow}"
    )
    problems = []
    if report["errors"]:
        problems.append(f"{len(report['errors'])} queries failed (first: {report['errors'][0]})")
    if status.checked_out:
        problems.append(f"{status.checked_out} connections were not returned to the pool (leak)")
    if report["opened"] >= args.queries > cfg.pool_size + cfg.max_overflow:
        problems.append("every query opened its own connection: the pool is not reusing them")
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        print("OK: connections reused and all returned to the pool")
    return 1 if problems else 0


def run_pool_test(database: Database, queries: int, threads: int) -> dict[str, Any]:
    """Run ``queries`` small queries on ``threads`` threads, sampling the pool while they run."""
    opened_before = database.pool_status().connections_opened
    is_pg = database.dialect == "postgresql"
    query = sa.text("SELECT pg_backend_pid() FROM pg_sleep(0.005)" if is_pg else "SELECT 1")
    sessions: set[Any] = set()
    errors: list[str] = []
    lock = threading.Lock()
    samples: list[str] = []
    done = threading.Event()

    def one(i: int) -> None:
        try:
            with database.engine.connect() as conn:
                value = conn.execute(query).scalar_one()
                if not is_pg:
                    value = id(conn.connection.dbapi_connection)
                    time.sleep(0.002)  # hold the connection briefly, as a real query would
            with lock:
                sessions.add(value)
        except Exception as exc:  # reported, and the test fails
            with lock:
                errors.append(
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                )

    def sample() -> None:
        while not done.wait(0.05):
            s = database.pool_status()
            samples.append(
                f"  during run: checked_out={s.checked_out} checked_in={s.checked_in} "
                f"overflow={s.overflow}"
            )

    monitor = threading.Thread(target=sample, daemon=True)
    start = time.monotonic()
    monitor.start()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(queries)))
    done.set()
    monitor.join()
    return {
        "seconds": time.monotonic() - start,
        "opened": database.pool_status().connections_opened - opened_before,
        "distinct": len(sessions),
        "errors": errors,
        "samples": samples[:: max(1, len(samples) // 10)],
    }
