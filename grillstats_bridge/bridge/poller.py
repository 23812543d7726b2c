"""The bridge's poller: one :class:`AccountPoller` per linked account.

It holds the account's cloud client, restores and persists its (encrypted)
tokens, and turns each poll into a ``domain.Poll`` carrying only the new
readings. :func:`poll_and_sync` is the one-off poll of the CLI (``devices sync``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

import requests
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from grillstats_bridge.accounts.service import cloud_client
from grillstats_bridge.config import Config
from grillstats_bridge.domain import Poll, Reading, Tokens, utcnow
from grillstats_bridge.store.accounts import (
    CredentialState,
    LinkState,
    flag_credentials,
    load_tokens,
    store_tokens,
)
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.devices import (
    SERIAL_MAX,
    SyncResult,
    fit_device,
    probe_marks,
    sync_poll,
)
from grillstats_bridge.store.models import ThermoWorksCredentials, User
from grillstats_bridge.store.secrets import SecretBox
from grillstats_bridge.thermoworks.client import CloudSnapshot, ThermoworksClient
from grillstats_bridge.thermoworks.errors import (
    CloudError,
    CredentialsNeedOwner,
    Unavailable,
    Wait,
    needs_owner,
)

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ polling


def say_poll_failure(key: int, exc: BaseException, reason: str, wait: Wait) -> None:
    """One log line for a failed poll: what failed and when the account is tried again."""
    if not isinstance(exc, CloudError) and isinstance(exc, SQLAlchemyError):
        log.warning("account %d: %s; next try in %.0f s", key, reason, wait.seconds or 0)
    elif wait.seconds is None:
        log.error("account %d: %s; waiting for 'account link' to fix it", key, exc)
    elif wait.capped_from is not None:
        log.warning(
            "account %d: %s; the cloud asked to wait %.0f s, waiting %.0f s "
            "(polling.max_retry_after)",
            key,
            exc,
            wait.capped_from,
            wait.seconds,
        )
    else:
        log.warning("account %d: %s; next try in %.0f s", key, exc, wait.seconds)


class AccountPoller:
    """Polls one linked ThermoWorks account for the daemon.

    Tokens come from the database and go back to it, encrypted, whenever the
    client refreshes them. A poll re-reads the link's row, so that an account
    flagged as needing its owner costs no request until it is linked again, and
    a fresh ``account link`` is picked up without a restart. Under the daemon,
    which reads every link's state periodically and passes it on
    (:meth:`note_link`), the row is re-read only when that state moved: one
    query per poll was half of a poll's own work.
    """

    def __init__(
        self,
        database: Database,
        config: Config,
        user_id: int,
        *,
        clock: Callable[[], datetime] = utcnow,
        session: requests.Session | None = None,
        box: SecretBox | None = None,
    ) -> None:
        self.database = database
        self.config = config
        self.user_id = user_id
        self._clock = clock
        self._http = session
        self._box = box or SecretBox.from_config(config.security, database=database)
        self._client: ThermoworksClient | None = None
        self._retired_requests = 0  # requests of clients closed since
        self._linked_token: str | None = None  # the encrypted refresh token the client came from
        self._unsaved_tokens: Tokens | None = None  # refreshed while the database was away
        self._link_noted: LinkState | None = None  # the daemon's last look at the link's row
        self._link_read: LinkState | None = None  # the row as this poller last read it
        self._last_times: dict[tuple[str, int], datetime] = {}
        self._connected: dict[tuple[str, int], bool] = {}
        self._refused: set[str] = set()  # serials too long to store (warned once)
        self._restore_readings_state()

    def __repr__(self) -> str:
        return f"<AccountPoller user={self.user_id}>"

    @property
    def client(self) -> ThermoworksClient | None:
        return self._client

    def requests_made(self) -> int:
        """Cloud requests of this account since the bridge started (every client's)."""
        return self._retired_requests + (self._client.requests_made if self._client else 0)

    def close(self) -> None:
        if self._client is not None:
            self._retired_requests += self._client.requests_made
            self._client.close()
            self._client = None

    def poll(self) -> Poll:
        """Poll the cloud once: every device, and only the readings that are new.

        Raises a CloudError on failure, after flagging the credentials in the
        database when only the owner can fix them; when to try again is the
        scheduler's business (one retry policy, :class:`RetryPolicy`).
        """
        try:
            client = self._current_client()
            snapshot = client.poll()
        except CloudError as exc:
            if needs_owner(exc) and not isinstance(exc, CredentialsNeedOwner):
                try:
                    flag_credentials(self.database, self.user_id, str(exc), self._clock())
                except SQLAlchemyError:
                    log.error(
                        "database unreachable: could not flag user %d's credentials", self.user_id
                    )
                self.close()
            raise
        return self._to_poll(snapshot)

    @property
    def needs_owner(self) -> bool:
        """True while the link is flagged (the daemon may skip this account until relinked)."""
        with self.database.transaction() as db:
            state = db.scalar(
                sa.select(ThermoWorksCredentials.state).where(
                    ThermoWorksCredentials.user_id == self.user_id
                )
            )
        return state != CredentialState.OK

    # -- internals

    def note_link(self, link: LinkState) -> None:
        """The link's state and change time as the daemon just read them."""
        self._link_noted = link

    def _current_client(self) -> ThermoworksClient:
        if (
            self._client is not None
            and self._unsaved_tokens is None
            and self._link_noted is not None
            and self._link_noted == self._link_read
        ):
            return self._client  # the row has not changed since it was read
        try:
            return self._client_from_database()
        except SQLAlchemyError as exc:
            if self._client is None:
                raise Unavailable(
                    "the database is unreachable and holds this account's credentials"
                ) from None
            # The database is away: keep polling with the session we have, so that
            # states keep reaching MQTT; the link's state is re-read when it is back.
            log.debug("credentials of user %d not re-read: %s", self.user_id, type(exc).__name__)
            return self._client

    def _client_from_database(self) -> ThermoworksClient:
        with self.database.transaction() as db:
            row = db.scalar(
                sa.select(ThermoWorksCredentials).where(
                    ThermoWorksCredentials.user_id == self.user_id
                )
            )
            if row is None:
                self.close()
                raise CredentialsNeedOwner(
                    f"user {self.user_id} is no longer linked to ThermoWorks"
                )
            self._link_read = LinkState(row.state, row.updated_at)
            if row.state != CredentialState.OK:
                self.close()
                raise CredentialsNeedOwner(
                    f"the ThermoWorks credentials of user {self.user_id} need the owner: "
                    f"{row.state_reason or row.state} (run 'account link' again)"
                )
            if self._unsaved_tokens is not None and row.refresh_token == self._linked_token:
                store_tokens(row, self._unsaved_tokens, self._box)
                self._linked_token = row.refresh_token
                self._unsaved_tokens = None
            if self._client is not None and row.refresh_token == self._linked_token:
                return self._client
            # First poll, or the account was linked again: start from the stored tokens.
            self.close()
            tokens = load_tokens(row, self._box)
            self._linked_token = row.refresh_token
            self._client = cloud_client(
                self.config.thermoworks,
                provider=row.provider,
                email=row.tw_email,
                tokens=tokens,
                password=self._stored_password,
                on_tokens=self._save_tokens,
                clock=self._clock,
                session=self._http,
            )
            return self._client

    def _stored_password(self) -> str | None:
        with self.database.transaction() as db:
            stored = db.scalar(
                sa.select(ThermoWorksCredentials.stored_password).where(
                    ThermoWorksCredentials.user_id == self.user_id
                )
            )
        return self._box.decrypt(stored) if stored else None

    def _save_tokens(self, tokens: Tokens) -> None:
        try:
            with self.database.transaction() as db:
                row = db.scalar(
                    sa.select(ThermoWorksCredentials).where(
                        ThermoWorksCredentials.user_id == self.user_id
                    )
                )
                if row is None:
                    return
                store_tokens(row, tokens, self._box)
                self._linked_token = row.refresh_token
                self._unsaved_tokens = None
        except SQLAlchemyError:
            # Kept in memory and written on the first poll that reaches the database.
            log.warning(
                "database unreachable: refreshed tokens of user %d kept in memory", self.user_id
            )
            self._unsaved_tokens = tokens

    def _restore_readings_state(self) -> None:
        """Start from what the database last stored, so a restart repeats no reading."""
        for serial, channel, last_time, connected in probe_marks(self.database, self.user_id):
            if last_time is not None:
                self._last_times[(serial, channel)] = last_time
            self._connected[(serial, channel)] = bool(connected)

    def _fits(self, serial: str) -> bool:
        """A serial the database can hold; a longer one is refused with one warning."""
        if len(serial) <= SERIAL_MAX:
            return True
        if serial not in self._refused:
            self._refused.add(serial)
            log.warning(
                "account %d: a device serial of %d characters (%r...) is longer than the "
                "%d the database keeps: that device is ignored",
                self.user_id,
                len(serial),
                serial[:20],
                SERIAL_MAX,
            )
        return False

    def _to_poll(self, snapshot: CloudSnapshot) -> Poll:
        readings: list[Reading] = []
        # Fit for the database where the poll enters: a serial too long is refused, text
        # too long is cut (with one warning each), so no later table refuses the poll.
        devices = tuple(fit_device(d) for d in snapshot.devices if self._fits(d.serial))
        for device in devices:
            for probe in device.probes:
                key = (device.serial, probe.channel)
                when = probe.last_telemetry_saved or device.last_telemetry_saved or device.last_seen
                was_connected = self._connected.get(key)
                self._connected[key] = probe.connected
                if when is None:
                    continue  # without a time nothing tells a new value from an old one
                if probe.connected:
                    last = self._last_times.get(key)
                    if last is None or when > last:
                        self._last_times[key] = when
                        readings.append(
                            Reading(
                                serial=device.serial,
                                channel=probe.channel,
                                time=when,
                                value=probe.value,
                                unit=probe.unit,
                            )
                        )
                elif was_connected:
                    # Unplugged: one reading without a value marks the moment, then silence.
                    readings.append(
                        Reading(
                            serial=device.serial,
                            channel=probe.channel,
                            time=max(when, self._last_times.get(key, when)),
                            value=None,
                            unit=probe.unit,
                        )
                    )
        return Poll(
            user_id=self.user_id,
            polled_at=self._clock(),
            devices=devices,
            readings=tuple(readings),
            malformed=snapshot.malformed,
        )


def poll_and_sync(
    database: Database, config: Config, user_emails: Sequence[str] | None = None
) -> list[tuple[str, SyncResult | CloudError]]:
    """One poll and sync per linked account (or per given user): ``devices sync``."""
    with database.transaction() as db:
        query = sa.select(User.id, User.email).join(
            ThermoWorksCredentials, ThermoWorksCredentials.user_id == User.id
        )
        if user_emails:
            keys = [e.strip().lower() for e in user_emails]
            query = query.where(sa.func.lower(User.email).in_(keys))
        users = db.execute(query.order_by(User.id)).all()
    out: list[tuple[str, SyncResult | CloudError]] = []
    box = SecretBox.from_config(config.security, database=database)
    for user_id, email in users:
        poller = AccountPoller(database, config, user_id, box=box)
        try:
            poll = poller.poll()
            out.append((email, sync_poll(database, poll)))
        except CloudError as exc:
            out.append((email, exc))
        finally:
            poller.close()
    return out
