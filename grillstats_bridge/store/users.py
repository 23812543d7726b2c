"""Bridge users: creation, passwords, locking, and the one function that logs a user in."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grillstats_bridge.config import SecurityConfig
from grillstats_bridge.domain import utcnow
from grillstats_bridge.errors import GrillstatsError, UsageError
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import User
from grillstats_bridge.store.secrets import (
    LockoutPolicy,
    LoginRefusal,
    hash_password,
    spend_bcrypt_time,
    verify_password,
)

# Deliberately simple: one @, no spaces, a dot in the domain. Full RFC 5322 accepts
# addresses no mail server delivers to, and rejecting typos is what matters here.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class AuthenticationError(GrillstatsError):
    """A login was refused; ``reason`` says why (the message is the same generic text)."""

    def __init__(self, reason: LoginRefusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


def normalize_email(email: str) -> str:
    """Lower-cased and stripped; raises UsageError for something that is not an email."""
    cleaned = email.strip().lower()
    if len(cleaned) > 120 or not _EMAIL.match(cleaned):
        raise UsageError(f"not a valid email address: {email!r}")
    return cleaned


def find_user(session: Session, email: str, *, for_update: bool = False) -> User | None:
    """The user of ``email`` (any case); ``for_update`` locks the row until the transaction
    ends (PostgreSQL; SQLite's writers are serialised by BEGIN IMMEDIATE already)."""
    key = email.strip().lower()
    query = sa.select(User).where(sa.func.lower(User.email) == key)
    return session.scalar(query.with_for_update() if for_update else query)


def get_user(session: Session, email: str) -> User:
    user = find_user(session, email)
    if user is None:
        raise UsageError(f"no user with email {email.strip()!r}")
    return user


def add_user(
    session: Session, email: str, password: str, config: SecurityConfig, name: str | None = None
) -> User:
    address = normalize_email(email)
    if find_user(session, address) is not None:
        raise UsageError(f"a user with email {address!r} already exists")
    if name is not None and len(name) > 100:
        raise UsageError("name: at most 100 characters")
    user = User(
        email=address,
        name=name,
        password_hash=hash_password(password, config.bcrypt_rounds),
        is_active=True,
        is_locked=False,
        failed_login_attempts=0,
    )
    session.add(user)
    session.flush()
    return user


def list_users(session: Session) -> Sequence[User]:
    return session.scalars(sa.select(User).order_by(User.id)).all()


def set_password(session: Session, email: str, password: str, config: SecurityConfig) -> User:
    user = get_user(session, email)
    user.password_hash = hash_password(password, config.bcrypt_rounds)
    return user


def unlock(session: Session, email: str) -> User:
    user = get_user(session, email)
    user.is_locked = False
    user.failed_login_attempts = 0
    return user


def set_active(session: Session, email: str, active: bool) -> User:
    user = get_user(session, email)
    user.is_active = active
    return user


def authenticate(
    database: Database,
    email: str,
    password: str,
    config: SecurityConfig,
    now: datetime | None = None,
) -> User:
    """The only way anything logs a user in. Returns the user or raises AuthenticationError.

    A wrong password counts a failure; ``max_failed_logins`` failures in a row lock the
    user for ``lockout_minutes`` (or until ``user unlock``); a locked or disabled user is
    refused even with the right password; success resets the count. An unknown email
    costs the same bcrypt time as a known one. The outcome is committed before a
    refusal is raised, so that a failure always counts. The user's row is locked from
    the read to the commit: parallel attempts are checked one after the other, so none
    reads a stale count (40 parallel wrong passwords: 5 refused as wrong, then locked).
    """
    now = now or utcnow()
    policy = LockoutPolicy.from_config(config)
    refusal: LoginRefusal | None = None
    with database.transaction() as session:
        user = find_user(session, email, for_update=True)
        if user is None:
            spend_bcrypt_time(config.bcrypt_rounds)
            refusal = LoginRefusal.INVALID
        else:
            refusal = _check(user, password, policy, now)
    if refusal is not None or user is None:
        raise AuthenticationError(refusal or LoginRefusal.INVALID)
    return user


def _check(user: User, password: str, policy: LockoutPolicy, now: datetime) -> LoginRefusal | None:
    if policy.lock_expired(bool(user.is_locked), user.last_failed_login, now):
        user.is_locked = False
        user.failed_login_attempts = 0
    matches = verify_password(password, user.password_hash)  # spent whatever the state
    if user.is_active is False:
        return LoginRefusal.DISABLED
    if user.is_locked:
        # Counted, but the lock keeps running from the failure that set it: someone
        # hammering a locked account cannot keep its owner out for ever.
        user.failed_login_attempts = (user.failed_login_attempts or 0) + (0 if matches else 1)
        return LoginRefusal.LOCKED
    if not matches:
        user.failed_login_attempts = (user.failed_login_attempts or 0) + 1
        user.last_failed_login = now
        if user.failed_login_attempts >= policy.max_failed:
            user.is_locked = True
        return LoginRefusal.INVALID
    user.failed_login_attempts = 0
    return None


def labels(database: Database, user_ids: Sequence[int]) -> dict[int, str]:
    """What to call each user: their name, else their e-mail address."""
    if not user_ids:
        return {}
    with database.session() as db:
        rows = db.execute(sa.select(User.id, User.name, User.email).where(User.id.in_(user_ids)))
        return {uid: name or email for uid, name, email in rows}
