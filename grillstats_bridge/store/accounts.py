"""Linking bridge users to ThermoWorks cloud accounts, with their secrets encrypted at rest.

A link is one ``thermoworks_credentials`` row: the provider, the ThermoWorks
email, the Firebase uid and account id, and the tokens, Fernet-encrypted with
the key of ``security.encryption_key`` or ``security.key_file``. The password
is stored (encrypted) only when the owner asks, and used only to sign in again
when the refresh token dies. Credentials that stop working are flagged with
the reason and the time; nothing retries them until the owner links again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grillstats_bridge.domain import Tokens
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import Device, ThermoWorksCredentials, User
from grillstats_bridge.store.secrets import SecretBox
from grillstats_bridge.store.users import get_user

log = logging.getLogger(__name__)


class CredentialState(StrEnum):
    OK = "ok"
    NEEDS_REAUTH = "needs_reauth"  # stopped working: only 'account link' again helps


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """What ``account show`` prints: never a token or a password."""

    user_id: int
    user_email: str
    provider: str
    tw_email: str | None
    uid: str | None
    account_id: str | None
    state: str
    state_reason: str | None
    state_changed_at: datetime | None
    expires_at: datetime | None
    password_stored: bool
    linked_at: datetime | None
    updated_at: datetime | None
    devices: int
    active_devices: int


def store_tokens(row: ThermoWorksCredentials, tokens: Tokens, box: SecretBox) -> None:
    """Put freshly issued tokens on a credentials row, encrypted."""
    row.access_token = box.encrypt(tokens.id_token)
    if tokens.refresh_token:
        row.refresh_token = box.encrypt(tokens.refresh_token)
    row.expires_at = tokens.expires_at
    if tokens.uid:
        row.uid = tokens.uid


def load_tokens(row: ThermoWorksCredentials, box: SecretBox) -> Tokens | None:
    """The row's tokens, decrypted; None when it has none."""
    if not row.access_token or not row.refresh_token or row.expires_at is None:
        return None
    return Tokens(
        id_token=box.decrypt(row.access_token),
        refresh_token=box.decrypt(row.refresh_token),
        expires_at=row.expires_at,
        uid=row.uid,
    )


def unlink_account(database: Database, user_email: str) -> bool:
    """Forget the link and its secrets; the devices stay, inactive. False: it was not linked."""
    with database.transaction() as db:
        user = get_user(db, user_email)
        row = user.credentials
        if row is None:
            return False
        db.delete(row)
        db.execute(
            sa.update(Device)
            .where(Device.user_id == user.id)
            .values(is_active=False, status="offline")
        )
    log.info("unlinked %s from ThermoWorks", user_email)
    return True


def account_info(database: Database, user_email: str) -> AccountInfo | None:
    """The link of a user (None: not linked); raises UsageError for an unknown user."""
    with database.transaction() as db:
        user = get_user(db, user_email)
        row = user.credentials
        if row is None:
            return None
        return _info(db, user, row)


def list_accounts(database: Database) -> list[AccountInfo]:
    """Every linked account, by user id."""
    with database.transaction() as db:
        rows = db.execute(
            sa.select(User, ThermoWorksCredentials)
            .join(ThermoWorksCredentials, ThermoWorksCredentials.user_id == User.id)
            .order_by(User.id)
        ).all()
        return [_info(db, user, row) for user, row in rows]


def _info(db: Session, user: User, row: ThermoWorksCredentials) -> AccountInfo:
    total, active = db.execute(
        sa.select(
            sa.func.count(Device.id),
            sa.func.count(Device.id).filter(Device.is_active.is_not(False)),
        ).where(Device.user_id == user.id)
    ).one()
    return AccountInfo(
        user_id=user.id,
        user_email=user.email,
        provider=row.provider,
        tw_email=row.tw_email,
        uid=row.uid,
        account_id=row.account_id,
        state=row.state,
        state_reason=row.state_reason,
        state_changed_at=row.state_changed_at,
        expires_at=row.expires_at,
        password_stored=row.stored_password is not None,
        linked_at=row.created_at,
        updated_at=row.updated_at,
        devices=int(total),
        active_devices=int(active),
    )


def flag_credentials(database: Database, user_id: int, reason: str, now: datetime) -> None:
    """Mark a link as no longer working (with why and since when) and its devices as in error."""
    with database.transaction() as db:
        row = db.scalar(
            sa.select(ThermoWorksCredentials).where(ThermoWorksCredentials.user_id == user_id)
        )
        if row is None:
            return
        row.state = CredentialState.NEEDS_REAUTH
        row.state_reason = reason[:255]
        row.state_changed_at = now
        db.execute(
            sa.update(Device)
            .where(Device.user_id == user_id, Device.is_active.is_not(False))
            .values(status="error")
        )
    log.warning(
        "ThermoWorks credentials of user %d stopped working (%s); "
        "run 'grillstats-bridge account link' again",
        user_id,
        reason,
    )


@dataclass(frozen=True, slots=True)
class LinkState:
    """A link's state and when its row last changed (a new 'account link' changes both)."""

    state: str
    updated_at: datetime | None


def link_states(database: Database) -> dict[int, LinkState]:
    """Every link's state by user id, in one query: how the daemon notices links and relinks."""
    with database.transaction() as db:
        rows = db.execute(
            sa.select(
                ThermoWorksCredentials.user_id,
                ThermoWorksCredentials.state,
                ThermoWorksCredentials.updated_at,
            )
        ).all()
    return {user_id: LinkState(state, updated) for user_id, state, updated in rows}
