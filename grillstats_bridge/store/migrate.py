"""Alembic, driven programmatically with the bridge's own database (no alembic.ini).

The light questions (which revision is the database at, is it at head) are in
:mod:`schema`, which does not import Alembic; they are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from grillstats_bridge.errors import UsageError
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import Base
from grillstats_bridge.store.revisions import (
    MigrationError,
    current_revision,
    head_revision,
    migrations_dir,
    require_head,
)

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

# Alembic is imported by the functions that use it: the daemon (``run``) imports this
# module but only migrates with --migrate, and Alembic would cost it ~10 MB of memory.


def alembic_config(database: Database, stdout: Any = None) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

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
    from alembic import command

    with _revision_errors(revision), _bound(database) as cfg:
        command.upgrade(cfg, revision)


def downgrade(database: Database, revision: str) -> None:
    from alembic import command

    with _revision_errors(revision), _bound(database) as cfg:
        command.downgrade(cfg, revision)


@contextmanager
def _revision_errors(revision: str) -> Iterator[None]:
    """Alembic's CommandError is about the revision asked for (unknown id, not a valid target)."""
    from alembic.util import CommandError

    try:
        yield
    except CommandError as exc:
        raise UsageError(f"revision {revision!r}: {exc}") from None


def history(database: Database, stdout: Any) -> None:
    from alembic import command

    command.history(alembic_config(database, stdout), verbose=False, indicate_current=False)


def revision(database: Database, message: str, autogenerate: bool, stdout: Any) -> None:
    from alembic import command

    with _bound(database, stdout) as cfg:
        command.revision(cfg, message=message, autogenerate=autogenerate)


def schema_differences(database: Database) -> list[Any]:
    """What autogenerate would change: empty when the models and the migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def alembic_head() -> str | None:
    """The head as Alembic computes it (tests check that :func:`head_revision` agrees)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(migrations_dir())).get_current_head()


__all__ = [
    "MigrationError",
    "alembic_head",
    "current_revision",
    "downgrade",
    "head_revision",
    "require_head",
    "schema_differences",
    "upgrade",
]
