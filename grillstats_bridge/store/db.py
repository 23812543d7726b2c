"""Engine, connection pool and transactions, with the seed's pool settings.

PostgreSQL (detected from the URL) gets ``statement_timeout`` on every pooled
connection and UTF-8 client encoding; SQLite gets foreign keys, WAL and a busy
timeout. Checkouts and checkins are logged at DEBUG, and ``pool_status()``
gives the seed's pool metrics for ``/health`` and ``db pool-test``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from grillstats_bridge.config import DatabaseConfig, redact_url
from grillstats_bridge.errors import GrillstatsError

log = logging.getLogger(__name__)


class DatabaseError(GrillstatsError):
    """The database cannot be reached or used; the message never holds the password."""


@dataclass(frozen=True, slots=True)
class PoolStatus:
    """The seed's pool metrics (``/health`` and ``db pool-test`` show them)."""

    pool_class: str
    size: int
    checked_in: int
    checked_out: int
    overflow: int
    max_overflow: int
    connections_opened: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def safe_url(url: str | URL) -> str:
    """The URL with every password hidden (``config.redact_url``), for messages and logs."""
    if isinstance(url, URL):
        url = url.render_as_string(hide_password=False)
    return redact_url(url)


def driver_url(url: URL) -> URL:
    """``postgresql://`` means psycopg2, the driver we ship; an explicit driver is kept as given.

    SQLAlchemy 2 reads a bare ``postgresql://`` as psycopg 3, which is not installed.
    """
    if url.drivername == "postgresql":
        return url.set(drivername="postgresql+psycopg2")
    return url


def sqlite_file(url: str | URL) -> str | None:
    """The file a SQLite URL names (None: another database, in memory, or not a URL)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


def sqlite_file_problem(url: str | URL) -> str | None:
    """Why a SQLite file cannot be opened, when its directory is the reason (SQLite only says
    "unable to open database file")."""
    database = sqlite_file(url)
    if database is None:
        return None
    folder = os.path.dirname(os.path.abspath(database))
    if not os.path.exists(folder):
        return f"the directory {folder} does not exist"
    if not os.path.isdir(folder):
        return f"{folder} is not a directory"
    if not os.access(folder, os.W_OK) and not os.path.exists(database):
        return f"the directory {folder} is not writable"
    return None


class Database:
    """One engine and its pool; the only way the bridge talks to its database."""

    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        try:
            url = driver_url(make_url(config.url))
        except ArgumentError:
            raise DatabaseError("database.url: not a valid SQLAlchemy URL") from None
        self.url = url
        self.engine = _create_engine(url, config)
        self._opened = 0
        self._lock = threading.Lock()
        self._install_pool_logging()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self) -> Session:
        """A new ORM session; close it (``with``) when done."""
        return self._sessions()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on any error."""
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def pool_status(self) -> PoolStatus:
        pool = self.engine.pool
        if isinstance(pool, QueuePool):
            return PoolStatus(
                pool_class=type(pool).__name__,
                size=pool.size(),
                checked_in=pool.checkedin(),
                checked_out=pool.checkedout(),
                overflow=max(pool.overflow(), 0),
                max_overflow=pool._max_overflow,
                connections_opened=self._opened,
            )
        return PoolStatus(type(pool).__name__, 1, 0, 0, 0, 0, self._opened)

    def ping(self) -> bool:
        """True when a trivial query succeeds."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def dispose(self) -> None:
        """Close every pooled connection (the engine stays usable and reconnects on demand)."""
        self.engine.dispose()

    def _install_pool_logging(self) -> None:
        def on_connect(dbapi_conn: Any, record: Any) -> None:
            with self._lock:
                self._opened += 1
            log.debug("database connection opened (%d so far)", self._opened)

        def on_checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("pool checkout: %s", self._short_status())

        def on_checkin(dbapi_conn: Any, record: Any) -> None:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("pool checkin: %s", self._short_status())

        event.listen(self.engine, "connect", on_connect)
        event.listen(self.engine.pool, "checkout", on_checkout)
        event.listen(self.engine.pool, "checkin", on_checkin)

    def _short_status(self) -> str:
        s = self.pool_status()
        return (
            f"size={s.size} checked_in={s.checked_in} "
            f"checked_out={s.checked_out} overflow={s.overflow}"
        )


def _create_engine(url: URL, config: DatabaseConfig) -> Engine:
    kwargs: dict[str, Any] = {"pool_pre_ping": config.pool_pre_ping}
    connect_args: dict[str, Any] = {}
    memory = url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")
    if not memory:
        # A file database and PostgreSQL both use a QueuePool: the seed's settings apply.
        kwargs.update(
            pool_size=config.pool_size,
            max_overflow=config.max_overflow,
            pool_recycle=config.pool_recycle,
            pool_timeout=config.pool_timeout,
        )
    if url.get_backend_name() == "postgresql":
        # What the seed calls use_native_unicode: psycopg2 on Python 3 always
        # decodes natively; we pin the client encoding so the server never transcodes.
        connect_args.update(
            options=f"-c statement_timeout={config.statement_timeout_ms}",
            client_encoding="utf8",
            application_name="grillstats-bridge",
            connect_timeout=10,
        )
        # Batched executemany for UPDATE/DELETE too (INSERTs are batched anyway): the
        # per-poll probe updates would otherwise go row by row (~3k/s instead of ~40k/s).
        kwargs["executemany_mode"] = "values_plus_batch"
    elif url.get_backend_name() == "sqlite":
        connect_args["check_same_thread"] = False
        connect_args["timeout"] = config.sqlite_busy_timeout_ms / 1000
        if not memory:
            kwargs["poolclass"] = QueuePool
            if not url.query.get("uri"):
                _create_owner_only(url.database or "")
    engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
    if url.get_backend_name() == "sqlite":
        _install_sqlite_pragmas(engine, config, memory)
    return engine


def _create_owner_only(path: str) -> None:
    """Create the SQLite file, if it is new, readable by its owner only whatever the umask
    (SQLite gives its -wal and -shm files the database file's mode)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # a missing folder or no permission: SQLite says so when it connects
    try:
        os.fchmod(fd, 0o600)  # an odd umask (0o200) must not leave it unwritable
    finally:
        os.close(fd)


def _install_sqlite_pragmas(engine: Engine, config: DatabaseConfig, memory: bool) -> None:
    def on_connect(dbapi_conn: Any, record: Any) -> None:
        # pysqlite's own transaction handling defers BEGIN; let SQLAlchemy emit it.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(config.sqlite_busy_timeout_ms)}")
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    def on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front, where the busy timeout applies. A
        # deferred BEGIN that reads and then writes fails at once with "database is
        # locked" when another writer committed meanwhile (WAL cannot upgrade a stale
        # snapshot), which concurrent pollers hit.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)


# ---------------------------------------------------------------- the process's default pool
# The seed's db_utils API: one pool per process, initialised at start-up.

_default: Database | None = None


def init_pool(config: DatabaseConfig) -> Database:
    """Create (or replace) the process's default pool."""
    global _default
    if _default is not None:
        _default.dispose()
    _default = Database(config)
    return _default


def get_database() -> Database:
    if _default is None:
        raise DatabaseError("the database pool is not initialised")
    return _default


@contextmanager
def db_transaction(database: Database | None = None) -> Iterator[Session]:
    """Commit on success, roll back on error (on ``database`` or the default pool)."""
    with (database or get_database()).transaction() as session:
        yield session


def pool_status(database: Database | None = None) -> PoolStatus:
    return (database or get_database()).pool_status()


def close_pool() -> None:
    """Dispose of the default pool's connections and forget it."""
    global _default
    if _default is not None:
        _default.dispose()
        _default = None
