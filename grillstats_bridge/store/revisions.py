"""Is the database at the newest migration? Answered without importing Alembic.

Alembic, with Mako and its friends, costs the process about 12 MB; the daemon
only needs to compare two revision ids, so it reads ``alembic_version`` with one
query and the revision chain from the migration scripts' own headers. The
migration commands themselves live in :mod:`migrate`.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import sqlalchemy as sa

from grillstats_bridge.errors import GrillstatsError
from grillstats_bridge.store.db import Database

_REVISION = re.compile(r"^revision\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(?:['\"]([^'\"]+)['\"]|None)", re.M)


class MigrationError(GrillstatsError):
    """A migration command failed or the database is not at the expected revision."""


def migrations_dir() -> Path:
    """The Alembic scripts: ``migrations/`` in a source checkout, or shipped in the package."""
    # The checkout's own scripts first: an editable install elsewhere (another git
    # worktree) maps grillstats_bridge.migrations to *its* checkout's scripts.
    checkout = Path(__file__).resolve().parents[2] / "migrations"  # store/ -> package -> root
    if (checkout / "env.py").is_file():
        return checkout
    try:
        import grillstats_bridge.migrations as shipped  # type: ignore[import-not-found]

        return Path(next(iter(shipped.__path__)))
    except ImportError:
        return checkout


@cache
def head_revision() -> str:
    """The newest revision: the one no other script names as its ``down_revision``."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in sorted((migrations_dir() / "versions").glob("*.py")):
        text = script.read_text(encoding="utf-8")
        found = _REVISION.search(text)
        if found is None:
            continue
        revisions.add(found.group(1))
        down = _DOWN.search(text)
        if down is not None and down.group(1):
            parents.add(down.group(1))
    heads = sorted(revisions - parents)
    if len(heads) != 1:
        raise MigrationError(f"the migration scripts have {len(heads)} heads: {heads}")
    return heads[0]


def current_revision(database: Database) -> str | None:
    """The database's revision; None for an empty database."""
    with database.engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def require_head(database: Database) -> None:
    """Raise MigrationError (one line saying what to run) unless the database is at head."""
    current, head = current_revision(database), head_revision()
    if current != head:
        state = "is empty" if current is None else f"is at revision {current}"
        raise MigrationError(
            f"the database {state}, not {head}: run 'grillstats-bridge db upgrade' "
            "(or start with --migrate)"
        )
