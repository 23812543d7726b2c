"""Linking a bridge user to a ThermoWorks account: the one place the cloud meets the link rows.

:func:`cloud_client` turns the ``thermoworks`` settings into a client (the client
itself takes plain arguments); :func:`link_account` signs in and stores the
encrypted link that the daemon's pollers then use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests
import sqlalchemy as sa

from grillstats_bridge.config import Config, ConfigError, ThermoworksConfig
from grillstats_bridge.domain import utcnow
from grillstats_bridge.errors import UsageError
from grillstats_bridge.store.accounts import (
    AccountInfo,
    CredentialState,
    account_info,
    store_tokens,
)
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import Device, ThermoWorksCredentials
from grillstats_bridge.store.secrets import SecretBox
from grillstats_bridge.store.users import get_user, normalize_email
from grillstats_bridge.thermoworks.client import Endpoints, ThermoworksClient
from grillstats_bridge.thermoworks.errors import EndpointError

log = logging.getLogger(__name__)

PROVIDER_CHOICES = ("thermoworks", "eti")


def endpoints_for(config: ThermoworksConfig, provider: str | None = None) -> Endpoints:
    """The configured endpoints; ``provider`` (an account's) overrides the configured one."""
    try:
        return Endpoints.resolve(
            provider or config.provider,
            api_key=config.api_key,
            app_id=config.app_id,
            referer=config.referer,
            project_id=config.project_id,
            identitytoolkit_url=config.identitytoolkit_url,
            securetoken_url=config.securetoken_url,
            firebase_url=config.firebase_url,
            firestore_url=config.firestore_url,
        )
    except EndpointError as exc:
        where = f"thermoworks.{exc.key}" if exc.key else "thermoworks"
        raise ConfigError(f"{where}: {exc}") from None


def cloud_client(
    config: ThermoworksConfig, *, provider: str | None = None, **options: Any
) -> ThermoworksClient:
    """A client for one account, with the configured endpoints, limits and refresh margin."""
    return ThermoworksClient(
        endpoints_for(config, provider),
        timeout=config.timeout,
        deadline=config.request_deadline,
        max_response_bytes=config.max_response_bytes,
        refresh_margin=config.refresh_margin,
        **options,
    )


def link_account(
    database: Database,
    config: Config,
    user_email: str,
    password: str,
    *,
    provider: str | None = None,
    tw_email: str | None = None,
    store_password: bool = False,
    clock: Callable[[], datetime] = utcnow,
    session: requests.Session | None = None,
) -> AccountInfo:
    """Sign in to ThermoWorks as the user and store the (encrypted) link; replaces an old link."""
    provider = provider or config.thermoworks.provider
    if provider not in (*PROVIDER_CHOICES, "custom"):
        raise UsageError(f"--provider: must be thermoworks or eti, got {provider!r}")
    with database.transaction() as db:
        user = get_user(db, user_email)
        user_id, default_email = user.id, user.email
    email = normalize_email(tw_email) if tw_email else default_email
    box = SecretBox.from_config(config.security, database=database)
    client = cloud_client(
        config.thermoworks, provider=provider, email=email, clock=clock, session=session
    )
    try:
        tokens = client.sign_in(password)
        profile = client.user_profile()
    finally:
        client.close()
    now = clock()
    with database.transaction() as db:
        row = db.scalar(
            sa.select(ThermoWorksCredentials).where(ThermoWorksCredentials.user_id == user_id)
        )
        if row is None:
            row = ThermoWorksCredentials(user_id=user_id)
            db.add(row)
        row.provider = provider
        row.tw_email = email
        row.uid = tokens.uid or profile.uid
        row.account_id = profile.account_id
        store_tokens(row, tokens, box)
        row.stored_password = box.encrypt(password) if store_password else None
        row.state = CredentialState.OK
        row.state_reason = None
        row.state_changed_at = now
        # A relinked account's devices come back: the next sync judges each one.
        db.execute(
            sa.update(Device)
            .where(Device.user_id == user_id, Device.status == "error")
            .values(status="offline")
        )
    log.info("linked %s to the %s account %s", default_email, provider, email)
    info = account_info(database, default_email)
    assert info is not None
    return info
