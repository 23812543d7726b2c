"""Account leases in PostgreSQL: which bridge process polls which linked account.

Every statement here is PostgreSQL's (``FOR UPDATE SKIP LOCKED``, ``FOR SHARE``,
``RETURNING``); on SQLite one process holds every account and nothing here runs.
A lease is a row of ``account_leases``: its owner (a process id), its fencing
token (one more every time the lease changes hands) and when it expires. Rows of
several accounts are always locked in account order, so that two processes
never deadlock on them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from grillstats_bridge.store.models import AccountLease, BridgeProcess, ThermoWorksCredentials

L = AccountLease.__table__.c
P = BridgeProcess.__table__.c
EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")

Leases = dict[int, int]  # user id -> fencing token


def heartbeat(
    db: Session,
    *,
    process_id: str,
    instance_id: str,
    host: str,
    pid: int,
    started_at: datetime,
    now: datetime,
) -> None:
    """Say this process is alive (its row, created on the first beat)."""
    insert = postgresql.insert(BridgeProcess).values(
        process_id=process_id,
        instance_id=instance_id,
        host=host[:255],
        pid=pid,
        started_at=started_at,
        heartbeat_at=now,
    )
    db.execute(
        insert.on_conflict_do_update(
            index_elements=["process_id"], set_={"heartbeat_at": insert.excluded.heartbeat_at}
        )
    )


def live_processes(db: Session, *, since: datetime, now: datetime) -> dict[str, int]:
    """Processes whose heartbeat is at or after ``since``, with the number of unexpired
    leases each holds. Every process on the database counts, whatever its instance id:
    the leases are the database's (one bridge per database)."""
    held = (
        sa.select(L.owner, sa.func.count().label("n"))
        .where(L.expires_at > now)
        .group_by(L.owner)
        .subquery()
    )
    rows = db.execute(
        sa.select(P.process_id, sa.func.coalesce(held.c.n, 0))
        .outerjoin(held, held.c.owner == P.process_id)
        .where(P.heartbeat_at >= since)
        .order_by(P.process_id)
    )
    return {process_id: int(n) for process_id, n in rows}


def holdings(db: Session, *, since: datetime, now: datetime) -> dict[str, list[int]]:
    """Live processes (a heartbeat at or after ``since``) and the accounts (user ids) whose
    unexpired leases each holds, in order: what ``<root>/bridge/info`` shows."""
    held: dict[str, list[int]] = {
        str(p): [] for p in db.scalars(sa.select(P.process_id).where(P.heartbeat_at >= since))
    }
    rows = db.execute(
        sa.select(L.owner, L.user_id).where(L.expires_at > now).order_by(L.owner, L.user_id)
    )
    for owner, user_id in rows:
        if owner in held:
            held[owner].append(int(user_id))
    return dict(sorted(held.items()))


def first_process(db: Session, instance_id: str, *, since: datetime) -> str | None:
    """The live process of ``instance_id`` that comes first by id: the one that
    publishes the bridge's own device (one writer for its topics)."""
    first = db.scalar(
        sa.select(sa.func.min(P.process_id)).where(
            P.instance_id == instance_id, P.heartbeat_at >= since
        )
    )
    return None if first is None else str(first)


def forget_processes(db: Session, before: datetime) -> int:
    """Remove the rows of processes silent since ``before`` (long dead)."""
    result = db.execute(sa.delete(BridgeProcess).where(P.heartbeat_at < before))
    return int(getattr(result, "rowcount", 0) or 0)


def neighbours(db: Session, host: str) -> list[tuple[str, int]]:
    """(process id, pid) of every process row of this host."""
    rows = db.execute(sa.select(P.process_id, P.pid).where(P.host == host[:255]))
    return [(process_id, int(pid)) for process_id, pid in rows]


def expire(db: Session, process_ids: Collection[str], now: datetime) -> None:
    """Processes known to be gone: their leases expire now, their rows go."""
    owners = sorted(process_ids)
    locked = (
        sa.select(L.user_id)
        .where(L.owner.in_(owners))
        .order_by(L.user_id)
        .with_for_update()
        .scalar_subquery()
    )
    db.execute(sa.update(AccountLease).where(L.user_id.in_(locked)).values(expires_at=now))
    db.execute(sa.delete(BridgeProcess).where(P.process_id.in_(owners)))


def leave(db: Session, process_id: str) -> None:
    """At a clean stop: the process's row goes (its leases are given back separately)."""
    db.execute(sa.delete(BridgeProcess).where(P.process_id == process_id))


def renew(
    db: Session, owner: str, held: Mapping[int, int], expires_at: datetime, now: datetime
) -> Leases:
    """Extend the leases still ours (same owner, same token); returns those."""
    return _update_held(db, owner, held, {"expires_at": expires_at, "heartbeat_at": now})


def _update_held(
    db: Session, owner: str, held: Mapping[int, int], values: Mapping[str, Any]
) -> Leases:
    """Set ``values`` on the leases of ``held`` still ``owner``'s (locked in user id order,
    so two processes never deadlock); those whose token is still the one in ``held``."""
    if not held:
        return {}
    locked = (
        sa.select(L.user_id)
        .where(L.user_id.in_(sorted(held)), L.owner == owner)
        .order_by(L.user_id)
        .with_for_update()
        .scalar_subquery()
    )
    rows = db.execute(
        sa.update(AccountLease)
        .where(L.user_id.in_(locked))
        .values(dict(values))
        .returning(L.user_id, L.token)
    )
    return {user_id: token for user_id, token in rows if held.get(user_id) == token}


def take(db: Session, owner: str, wanted: int, expires_at: datetime, now: datetime) -> Leases:
    """Take up to ``wanted`` free or expired leases of linked accounts (token + 1).

    Accounts linked since the last look get their lease row first. ``SKIP LOCKED``:
    a lease another process is taking or renewing right now is not waited for.
    """
    if wanted <= 0:
        return {}
    linked = sa.select(ThermoWorksCredentials.user_id, sa.literal(0), sa.literal(EPOCH))
    db.execute(
        postgresql.insert(AccountLease)
        .from_select(["user_id", "token", "expires_at"], linked)
        .on_conflict_do_nothing(index_elements=["user_id"])
    )
    free = (
        sa.select(L.user_id)
        .where(sa.or_(L.owner.is_(None), L.expires_at <= now))
        .order_by(L.user_id)
        .limit(wanted)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = db.execute(
        sa.update(AccountLease)
        .where(L.user_id.in_(free))
        .values(owner=owner, token=L.token + 1, expires_at=expires_at, heartbeat_at=now)
        .returning(L.user_id, L.token)
    )
    return {user_id: token for user_id, token in rows}


def give_back(db: Session, owner: str, leases: Mapping[int, int], now: datetime) -> Leases:
    """Release these leases (still ours with that token) for another process to take."""
    return _update_held(db, owner, leases, {"owner": None, "expires_at": now})


def fence(
    db: Session, owner: str, leases: Mapping[int, int], user_ids: Collection[int]
) -> set[int]:
    """Of ``user_ids``, those whose lease is still ours with our token, locked ``FOR SHARE``
    until the caller's transaction ends: no other process can take them meanwhile, so
    what the transaction writes for them is written by their one holder."""
    wanted = sorted(u for u in set(user_ids) if u in leases)
    if not wanted:
        return set()
    rows = db.execute(
        sa.select(L.user_id, L.token)
        .where(L.user_id.in_(wanted), L.owner == owner)
        .order_by(L.user_id)
        .with_for_update(read=True)
    )
    return {user_id for user_id, token in rows if leases.get(user_id) == token}


# The owner and token of one account's lease, for a plain DBAPI cursor (one indexed read).
HOLDER_SQL = "SELECT owner, token FROM account_leases WHERE user_id = %s"


def holder(db: Session, user_id: int) -> tuple[str | None, int] | None:
    """The owner and token of an account's lease (None: no lease row)."""
    row = db.execute(sa.select(L.owner, L.token).where(L.user_id == user_id)).first()
    return None if row is None else (row[0], int(row[1]))
