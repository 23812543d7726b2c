"""The SQL helpers every store module shares: one dialect-aware upsert, and one way to
undo in-memory state when the transaction that wrote it does not commit."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, SessionTransaction

from grillstats_bridge.store import bulk


def upsert(
    db: Session,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    keys: Sequence[str],
    update: Sequence[str] = (),
) -> None:
    """Insert ``rows``; where one conflicts on ``keys``, set its ``update`` columns from the
    new row (with no ``update`` columns, keep the old row). PostgreSQL or SQLite, one
    statement executed for all rows (on PostgreSQL one multi-row INSERT: ``bulk``)."""
    if not rows:
        return
    columns = tuple(rows[0])
    if bulk.supported(db) and _plain(table, columns, rows):
        bulk.insert_rows(
            db, table, columns, [tuple(r.values()) for r in rows], keys=keys, update=update
        )
        return
    dialect = db.get_bind().dialect.name
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    if update:
        statement = insert.on_conflict_do_update(
            index_elements=list(keys), set_={c: insert.excluded[c] for c in update}
        )
    else:
        statement = insert.on_conflict_do_nothing(index_elements=list(keys))
    db.execute(statement, list(rows))


def _plain(table: sa.Table, columns: tuple[str, ...], rows: Sequence[Mapping[str, Any]]) -> bool:
    """True when the rows can be rendered as they are: the same columns in the same order
    in every row, and no column left out that SQLAlchemy would fill on the client."""
    if any(tuple(r) != columns for r in rows):
        return False
    given = set(columns)
    return not any(c.default is not None and c.name not in given for c in table.columns)


class RollbackHook(Protocol):
    def rolled_back(self) -> None:
        """The transaction that held this hook ended without a commit."""


H = TypeVar("H", bound=RollbackHook)
_HOOKS = "grillstats.rollback_hooks"


def rollback_hook(db: Session, key: Hashable, make: Callable[[], H]) -> H:
    """The hook this transaction holds under ``key``, made on first use.

    Its ``rolled_back()`` runs once if the outermost transaction ends without a commit
    (rolled back, or closed); a commit discards it. For in-memory state (caches, the
    session tracker) that must not outlive writes that never happened. A savepoint's
    release is not the commit.
    """
    hooks: dict[Hashable, RollbackHook] | None = db.info.get(_HOOKS)
    if hooks is None:
        hooks = db.info[_HOOKS] = {}
        if not event.contains(db, "after_commit", _committed):
            event.listen(db, "after_commit", _committed)
            event.listen(db, "after_transaction_end", _ended)
    hook = hooks.get(key)
    if hook is None:
        hook = hooks[key] = make()
    return hook  # type: ignore[return-value]  # made by this key's ``make``


def _committed(db: Session) -> None:
    if not db.in_nested_transaction():
        db.info.pop(_HOOKS, None)


def _ended(db: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None:
        return
    for hook in db.info.pop(_HOOKS, {}).values():
        hook.rolled_back()
