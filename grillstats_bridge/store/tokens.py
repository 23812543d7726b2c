"""Per-user API tokens: created (shown once), listed, revoked, and checked on each request.

A token is 32 random bytes (``secrets.token_urlsafe``), so a plain SHA-256 of it is
enough to store: there is nothing to brute-force that bcrypt's cost would protect.
Checking one is a single indexed lookup by that hash; a revoked token is refused at
once, since nothing caches them.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grillstats_bridge.domain import utcnow
from grillstats_bridge.errors import UsageError
from grillstats_bridge.store.models import ApiToken, User

PREFIX = "gsb_"  # says what a leaked string is, for secret scanners and for people
SHOWN = 10  # characters of the token kept to tell tokens apart (prefix included)
USE_RECORDED_EVERY = timedelta(minutes=1)  # last_used_at's resolution


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session, user: User, name: str, now: datetime | None = None
) -> tuple[ApiToken, str]:
    """A new token for ``user``: the row and the token itself (shown once, never stored)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise UsageError("token name: 1 to 100 characters")
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=hash_token(token),
        prefix=token[:SHOWN],
        created_at=now or utcnow(),
    )
    session.add(row)
    session.flush()
    return row, token


def list_tokens(session: Session, user_id: int | None = None) -> Sequence[ApiToken]:
    query = sa.select(ApiToken).order_by(ApiToken.id)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    return session.scalars(query).all()


def revoke_token(
    session: Session, token_id: int, user_id: int | None = None, now: datetime | None = None
) -> ApiToken:
    """Revoke a token (of ``user_id`` when given: another user's is 'no token')."""
    row = session.get(ApiToken, token_id)
    if row is None or (user_id is not None and row.user_id != user_id):
        raise UsageError(f"no API token with id {token_id}")
    if row.revoked_at is None:
        row.revoked_at = now or utcnow()
    session.flush()
    return row


def user_for_token(session: Session, token: str, now: datetime | None = None) -> User | None:
    """The active user a live token belongs to, or None; records when it was last used."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    row = session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        return None
    user = session.get(User, row.user_id)
    if user is None or user.is_active is False:
        return None
    now = now or utcnow()
    if row.last_used_at is None or now - row.last_used_at >= USE_RECORDED_EVERY:
        row.last_used_at = now  # not on every request: a script polling must not write each time
    return user
