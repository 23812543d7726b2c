"""Batched writes on PostgreSQL: one ``UPDATE ... FROM (VALUES ...)``, one ``INSERT ... VALUES``.

An executemany UPDATE sends one statement per row (psycopg2's ``execute_batch``
only groups them into fewer round trips): the server parses and plans each. Here
the rows become one ``VALUES`` list, rendered by psycopg2 itself (it interpolates
parameters on the client anyway, with its own quoting), each column cast to its
type, so that one statement writes them all; table and column names come from
the SQLAlchemy table and are quoted by the dialect. It is the one hand-built
statement left: built with SQLAlchemy (``sa.values``) the same update takes
4.7 times as long, an executemany 1.7 times (``benchmarks/bulk_sql.py``).
``store.sql.upsert`` writes its rows with :func:`insert_rows` the same way: SQLAlchemy
sends an ``INSERT ... ON CONFLICT`` without RETURNING through psycopg2's
``execute_batch``, a statement per row, each with its parameters processed by
SQLAlchemy (the readings and session probes of every transaction were ~10 % of the
bridge's CPU). Elsewhere (SQLite) the caller uses an ordinary executemany.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session


def supported(session: Session) -> bool:
    """True when the session's connection can take one-statement batches (psycopg2)."""
    dialect = session.get_bind().dialect
    return dialect.name == "postgresql" and dialect.driver == "psycopg2"


def _values(
    session: Session,
    table: sa.Table,
    key: tuple[str, str] | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> tuple[Any, str]:
    """The rows as a rendered VALUES list (for a ``%s`` placeholder), and the column names."""
    from psycopg2.extensions import AsIs  # type: ignore[import-untyped]

    connection = session.connection()
    dialect = connection.dialect
    plans = _PLANS.setdefault(dialect, {})
    plan = plans.get((table, key, tuple(columns)))
    if plan is None:
        plan = plans[(table, key, tuple(columns))] = _plan(dialect, table, key, columns)
    casts, convert, names = plan
    width = len(casts)
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    try:
        mogrify = cursor.mogrify
        # A server that reads backslashes in string literals as escapes: psycopg2 quotes all.
        standard = dbapi.get_parameter_status("standard_conforming_strings") == "on"
        literal = _literal if standard else _by_psycopg2
        parts: list[str] = []
        for row in rows:
            if len(row) != width:
                raise ValueError(f"a row of {len(row)} values for {width} columns")
            if convert:
                row = list(row)
                for i, process in convert:
                    row[i] = process(row[i])
            parts.append(
                "("
                + ", ".join([literal(v, mogrify) + c for v, c in zip(row, casts, strict=True)])
                + ")"
            )
    finally:
        cursor.close()
    return AsIs(", ".join(parts)), names


def _literal(value: Any, mogrify: Any) -> str:
    """A value as an SQL literal: the common types here, written as psycopg2 writes them
    (with standard_conforming_strings on, a string's only escape is a doubled quote);
    anything else, and what those spellings cannot hold, by psycopg2 itself.

    psycopg2's ``mogrify`` takes ~1 us per value, and every reading writes two rows."""
    kind = type(value)
    if kind is str:
        if "\x00" not in value:
            text: str = value
            return "'" + text.replace("'", "''") + "'"
    elif kind is int:
        return str(value)
    elif kind is float:
        if math.isfinite(value):
            return repr(value)
    elif value is None:
        return "NULL"
    elif kind is bool:
        return "true" if value else "false"
    elif kind is datetime and value.tzinfo is not None:
        return f"'{value.isoformat()}'"  # cast to the column's type by the caller
    return _by_psycopg2(value, mogrify)


def _by_psycopg2(value: Any, mogrify: Any) -> str:
    rendered: bytes = mogrify("%s", (value,))
    return rendered.decode()  # client encoding: UTF-8 (db.py)


# The rendering of a table's columns, made once per dialect: compiling each type's cast
# and looking up its bind processor took longer than rendering a small batch.
_Plan = tuple[list[str], list[tuple[int, Any]], str]
_PLANS: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], _Plan]] = weakref.WeakKeyDictionary()


def _plan(
    dialect: Any, table: sa.Table, key: tuple[str, str] | None, columns: Sequence[str]
) -> _Plan:
    """(each value's cast, (index, bind processor) where there is one, the quoted column
    names)."""
    types = [table.c[c].type for c in columns]
    processors = [t.dialect_impl(dialect).bind_processor(dialect) for t in types]
    casts = [f"::{t.compile(dialect=dialect)}" for t in types]
    quote = dialect.identifier_preparer.quote
    names = [quote(c) for c in columns]
    if key is not None:
        casts.insert(0, f"::{key[1]}")
        processors.insert(0, None)
        names.insert(0, quote(key[0]))
    convert = [(i, p) for i, p in enumerate(processors) if p is not None]
    return casts, convert, ", ".join(names)


def update_rows(
    session: Session, table: sa.Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """``UPDATE table SET columns WHERE id = row[0]`` for every row (id, *values), in one
    ``UPDATE ... FROM (VALUES ...)`` statement (PostgreSQL with psycopg2 only)."""
    if not rows:
        return
    values, names = _values(session, table, ("b_id", "INTEGER"), columns, rows)
    quote = session.get_bind().dialect.identifier_preparer.quote
    name = quote(table.name)
    sets = ", ".join(f"{quote(c)} = v.{quote(c)}" for c in columns)
    session.connection().exec_driver_sql(
        f"UPDATE {name} SET {sets} FROM (VALUES %s) AS v ({names}) WHERE {name}.id = v.b_id",
        (values,),
    )


def insert_rows(
    session: Session,
    table: sa.Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    keys: Sequence[str],
    update: Sequence[str] = (),
) -> None:
    """``INSERT INTO table (columns) VALUES ... ON CONFLICT (keys) DO UPDATE SET update``
    (or ``DO NOTHING``) for every row, in one statement (PostgreSQL with psycopg2 only).

    A row whose keys come again later in ``rows`` is left out when ``update`` is given
    (one statement cannot update a row twice): the later row is what one statement per
    row would have left."""
    if not rows:
        return
    if update:
        at = [columns.index(k) for k in keys]
        last = {tuple(row[i] for i in at): row for row in rows}
        if len(last) != len(rows):
            rows = list(last.values())
    values, names = _values(session, table, None, columns, rows)
    quote = session.get_bind().dialect.identifier_preparer.quote
    conflict = ", ".join(quote(k) for k in keys)
    action = (
        "DO UPDATE SET " + ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in update)
        if update
        else "DO NOTHING"
    )
    session.connection().exec_driver_sql(
        f"INSERT INTO {quote(table.name)} ({names}) VALUES %s ON CONFLICT ({conflict}) {action}",
        (values,),
    )
