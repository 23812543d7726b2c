"""The pool, its settings and the backend specifics, on SQLite and the real PostgreSQL."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from grillstats_bridge.config import DatabaseConfig
from grillstats_bridge.store import db as dbmod
from grillstats_bridge.store import migrate
from grillstats_bridge.store.db import Database, db_transaction, safe_url
from grillstats_bridge.store.models import Device, GrillingSession, ThermoWorksCredentials, User
from grillstats_bridge.store.secrets import load_key_file


def make_user(email: str = "a@example.com") -> User:
    return User(email=email, password_hash="x" * 60)


def test_pool_uses_the_seed_settings(db_url: str) -> None:
    database = Database(
        DatabaseConfig(url=db_url, pool_size=3, max_overflow=2, pool_recycle=120, pool_timeout=4)
    )
    try:
        pool = database.engine.pool
        assert isinstance(pool, sa.pool.QueuePool)
        assert pool.size() == 3
        assert pool._max_overflow == 2
        assert pool._recycle == 120
        assert pool._timeout == 4
        assert pool._pre_ping is True
        status = database.pool_status()
        assert (status.size, status.checked_out, status.max_overflow) == (3, 0, 2)
    finally:
        database.dispose()


def test_pool_status_counts_checkouts_and_overflow(database: Database) -> None:
    database = Database(DatabaseConfig(url=database.config.url, pool_size=2, max_overflow=3))
    try:
        conns = [database.engine.connect() for _ in range(4)]  # four checkouts, no query yet
        status = database.pool_status()
        assert status.checked_out == 4
        assert status.overflow == 2
        for c in conns:
            c.close()
        status = database.pool_status()
        assert status.checked_out == 0
        assert status.checked_in >= 2
    finally:
        database.dispose()


def test_transaction_commits_and_rolls_back(database: Database) -> None:
    with db_transaction(database) as session:
        session.add(make_user("keep@example.com"))
    with pytest.raises(RuntimeError), db_transaction(database) as session:
        session.add(make_user("gone@example.com"))
        session.flush()
        raise RuntimeError("boom")
    with database.session() as session:
        emails = session.scalars(sa.select(User.email)).all()
    assert emails == ["keep@example.com"]
    assert database.pool_status().checked_out == 0


def test_default_pool_functions(database: Database) -> None:
    dbmod.init_pool(database.config)
    try:
        with dbmod.db_transaction() as session:
            session.add(make_user())
        assert dbmod.pool_status().checked_out == 0
    finally:
        dbmod.close_pool()
    with pytest.raises(dbmod.DatabaseError, match="not initialised"):
        dbmod.get_database()


def test_timestamps_are_aware_utc_and_update(database: Database) -> None:
    local = timezone(timedelta(hours=-6))
    with database.transaction() as session:
        user = make_user()
        user.last_failed_login = datetime(2026, 7, 4, 12, 0, tzinfo=local)
        session.add(user)
    with database.transaction() as session:
        user = session.scalars(sa.select(User)).one()
        assert user.last_failed_login == datetime(2026, 7, 4, 18, 0, tzinfo=UTC)
        assert user.last_failed_login.tzinfo is UTC
        assert user.created_at is not None and user.created_at.tzinfo is UTC
        assert user.updated_at is not None
        first_update = user.updated_at
        user.name = "Changed"
    with database.session() as session:
        user = session.scalars(sa.select(User)).one()
        assert user.updated_at is not None and user.updated_at >= first_update


def test_seed_defaults_from_the_database_itself(database: Database) -> None:
    """Server defaults hold even for rows written without the ORM."""
    with database.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (email, password_hash) VALUES ('raw@x.io', 'h')"))
        uid = conn.execute(sa.text("SELECT id FROM users")).scalar_one()
        conn.execute(
            sa.text("INSERT INTO devices (user_id, device_id) VALUES (:u, '10:06:1C:6F:47:70')"),
            {"u": uid},
        )
        conn.execute(
            sa.text("INSERT INTO grilling_sessions (user_id, device_id) VALUES (:u, 'M1')"),
            {"u": uid},
        )
    with database.session() as session:
        user = session.scalars(sa.select(User)).one()
        assert (user.is_active, user.is_locked, user.failed_login_attempts) == (True, False, 0)
        assert user.created_at is not None
        device = session.scalars(sa.select(Device)).one()
        assert (device.status, device.is_active) == ("offline", True)
        cook = session.scalars(sa.select(GrillingSession)).one()
        assert (cook.session_type, cook.status) == ("auto", "active")
        assert cook.start_time is not None


def test_constraints_are_enforced(database: Database) -> None:
    with database.transaction() as session:
        session.add(make_user())
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.add(make_user())  # unique email
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.add(Device(user_id=999, device_id="M100081209"))  # foreign key (SQLite too)
    with database.transaction() as session:
        user = session.scalars(sa.select(User)).one()
        session.add(ThermoWorksCredentials(user_id=user.id))
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.add(ThermoWorksCredentials(user_id=user.id))  # one-to-one


def test_relationships(database: Database) -> None:
    with database.transaction() as session:
        user = make_user()
        user.devices.append(Device(device_id="10:06:1C:6F:47:70", nickname="Smoker"))
        user.sessions.append(GrillingSession(device_id="10:06:1C:6F:47:70"))
        user.credentials = ThermoWorksCredentials()
        session.add(user)
    with database.session() as session:
        user = session.scalars(sa.select(User)).one()
        assert [d.device_id for d in user.devices] == ["10:06:1C:6F:47:70"]
        assert user.devices[0].user is user
        assert len(user.sessions) == 1
        assert user.credentials is not None and user.credentials.user is user


@pytest.mark.parametrize("dialect", ["postgresql"])
def test_postgresql_session_settings(pg_url: str, dialect: str) -> None:
    database = Database(DatabaseConfig(url=pg_url, statement_timeout_ms=30000))
    try:
        with database.engine.connect() as conn:
            assert conn.execute(sa.text("SHOW statement_timeout")).scalar_one() == "30s"
            assert conn.execute(sa.text("SHOW client_encoding")).scalar_one() == "UTF8"
            assert (
                conn.execute(sa.text("SELECT 'Brisket ☃ Grüße'")).scalar_one() == "Brisket ☃ Grüße"
            )
        short = Database(DatabaseConfig(url=pg_url, statement_timeout_ms=50))
        with (
            pytest.raises(sa.exc.OperationalError, match="statement timeout"),
            short.engine.connect() as conn,
        ):
            conn.execute(sa.text("SELECT pg_sleep(1)"))
        short.dispose()
    finally:
        database.dispose()


def test_sqlite_pragmas(tmp_path: object) -> None:
    database = Database(
        DatabaseConfig(url=f"sqlite:///{tmp_path}/p.db", sqlite_busy_timeout_ms=1234)
    )
    try:
        with database.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 1234
    finally:
        database.dispose()


def test_stale_connections_are_replaced_by_pre_ping(pg_url: str) -> None:
    """A connection killed on the server side is noticed and replaced, not handed out."""
    database = Database(DatabaseConfig(url=pg_url, pool_size=1, max_overflow=0))
    try:
        with database.engine.connect() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        admin = sa.create_engine(pg_url, poolclass=sa.pool.NullPool)
        with admin.begin() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        admin.dispose()
        with database.engine.connect() as conn:
            new_pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        assert new_pid != pid
    finally:
        database.dispose()


def test_checkout_and_checkin_logged_at_debug(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.DEBUG, logger="grillstats_bridge.store.db"),
        database.engine.connect() as conn,
    ):
        conn.execute(sa.text("SELECT 1"))
    messages = [r.getMessage() for r in caplog.records if r.name == "grillstats_bridge.store.db"]
    assert any(m.startswith("pool checkout: ") for m in messages)
    assert any(m.startswith("pool checkin: ") for m in messages)


def test_safe_url_hides_password() -> None:
    assert safe_url("postgresql+psycopg2://u:hunter2@h/db") == "postgresql+psycopg2://u:***@h/db"
    assert "hunter2" not in safe_url("postgresql://u:hunter2@h/db")


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which files are created world-readable by default."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.usefixtures("umask_022")
def test_files_the_bridge_creates_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "grillstats.db"
    database = Database(DatabaseConfig(url=f"sqlite:///{path}"))
    try:
        migrate.upgrade(database)
        with database.transaction() as db:
            db.execute(sa.text("SELECT 1"))
        created = [path, path.with_name("grillstats.db-wal"), path.with_name("grillstats.db-shm")]
        modes = {p.name: oct(p.stat().st_mode & 0o777) for p in created if p.exists()}
    finally:
        database.dispose()
    assert modes == {p.name: "0o600" for p in created}  # the database and its journal
    key = tmp_path / "grillstats.key"
    load_key_file(key)
    assert oct(key.stat().st_mode & 0o777) == "0o600"
