"""Alembic, driven programmatically with the bridge's own database (no alembic.ini)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from grillstats_bridge.db import Database
from grillstats_bridge.errors import GrillstatsError
from grillstats_bridge.models import Base


class MigrationError(GrillstatsError):
    """A migration command failed or the database is not at the expected revision."""


def migrations_dir() -> Path:
    """The Alembic scripts: shipped in the package, or ``migrations/`` in a source checkout."""
    try:
        import grillstats_bridge.migrations as shipped  # type: ignore[import-not-found]

        return Path(next(iter(shipped.__path__)))
    except ImportError:
        return Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database: Database, stdout: Any = None) -> AlembicConfig:
    cfg = AlembicConfig(stdout=stdout) if stdout is not None else AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # Alembic's ini interpolation treats % specially; escape it in the URL.
    cfg.set_main_option(
        "sqlalchemy.url", database.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    return cfg


@contextmanager
def _bound(database: Database, stdout: Any = None) -> Iterator[AlembicConfig]:
    cfg = alembic_config(database, stdout)
    with database.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        yield cfg


def upgrade(database: Database, revision: str = "head") -> None:
    with _bound(database) as cfg:
        command.upgrade(cfg, revision)


def downgrade(database: Database, revision: str) -> None:
    with _bound(database) as cfg:
        command.downgrade(cfg, revision)


def history(database: Database, stdout: Any) -> None:
    command.history(alembic_config(database, stdout), verbose=False, indicate_current=False)


def revision(database: Database, message: str, autogenerate: bool, stdout: Any) -> None:
    with _bound(database, stdout) as cfg:
        command.revision(cfg, message=message, autogenerate=autogenerate)


def head_revision() -> str | None:
    script = ScriptDirectory(str(migrations_dir()))
    return script.get_current_head()


def current_revision(database: Database) -> str | None:
    with database.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def require_head(database: Database) -> None:
    """Raise MigrationError (one line saying what to run) unless the database is at head."""
    current, head = current_revision(database), head_revision()
    if current != head:
        state = "is empty" if current is None else f"is at revision {current}"
        raise MigrationError(
            f"the database {state}, not {head}: run 'grillstats-bridge db upgrade' "
            "(or start with --migrate)"
        )


def schema_differences(database: Database) -> list[Any]:
    """What autogenerate would change: empty when the models and the migrations agree."""
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))
