"""The models and the migrations agree, and the chain goes down and up again, on both backends."""

from __future__ import annotations

import sqlalchemy as sa

from grillstats_bridge.config import DatabaseConfig
from grillstats_bridge.store import migrate
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import Base


def test_upgrade_matches_models_and_round_trips(empty_db_url: str) -> None:
    database = Database(DatabaseConfig(url=empty_db_url))
    try:
        assert migrate.current_revision(database) is None
        migrate.upgrade(database)
        assert migrate.current_revision(database) == migrate.head_revision()
        assert migrate.schema_differences(database) == []
        tables = set(sa.inspect(database.engine).get_table_names())
        assert {t.name for t in Base.metadata.sorted_tables} <= tables

        migrate.downgrade(database, "base")
        assert migrate.current_revision(database) is None
        assert set(sa.inspect(database.engine).get_table_names()) <= {"alembic_version"}

        migrate.upgrade(database)
        assert migrate.schema_differences(database) == []
    finally:
        database.dispose()


def test_every_revision_downgrades_one_step(empty_db_url: str) -> None:
    """Each revision's downgrade undoes exactly its upgrade (step by step, not only to base)."""
    database = Database(DatabaseConfig(url=empty_db_url))
    try:
        migrate.upgrade(database)
        head = migrate.current_revision(database)
        steps = 0
        while migrate.current_revision(database) is not None:
            migrate.downgrade(database, "-1")
            steps += 1
        assert steps >= 1
        migrate.upgrade(database)
        assert migrate.current_revision(database) == head
    finally:
        database.dispose()


def test_light_head_check_agrees_with_alembic() -> None:
    """The daemon's Alembic-free head (revisions.head_revision) is Alembic's head."""
    from grillstats_bridge.store import revisions

    assert revisions.head_revision() == migrate.alembic_head()
