"""The ThermoWorks cloud client: Firebase sign-in and refresh, project lookup, Firestore reads.

It follows the ThermoWorks cloud protocol (Firebase Identity Toolkit, Secure Token and
Firestore REST, as docs/accounts.md summarises it): the provider's API key on every call
(``?key=`` or ``x-goog-api-key``), the provider's Referer on every call, the
bearer id token on data calls. It knows nothing of the database or MQTT: it
takes tokens and an optional password source in, hands refreshed tokens to a
callback, and returns ``domain`` objects.

A poll costs two requests in the steady state: ``runQuery`` for the account's
devices and one ``batchGet`` for every known channel. A device seen for the
first time has its channels listed once (one request). When the cloud refuses
``batchGet`` the client lists each device's channels instead, and when it
refuses that too, it reads channel by channel as the public clients do.
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import orjson
import requests

from grillstats_bridge.domain import Device, Probe, Tokens, utcnow
from grillstats_bridge.thermoworks.errors import (
    AccountDisabled,
    CloudError,
    EndpointError,
    InvalidCredentials,
    MalformedDocument,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    RateLimited,
    RefreshTokenInvalid,
    RequestRefused,
    SignInBusy,
    TokenExpired,
    TooManyAttempts,
    Unavailable,
)
from grillstats_bridge.thermoworks.firestore import Document, decode_document
from grillstats_bridge.thermoworks.parse import (
    UserProfile,
    as_unit,
    parse_channel,
    parse_device,
    parse_user,
)
from grillstats_bridge.thermoworks.providers import (
    FIREBASE_URL,
    FIRESTORE_URL,
    IDENTITYTOOLKIT_URL,
    PROVIDERS,
    SECURETOKEN_URL,
)
from grillstats_bridge.thermoworks.transport import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_RESPONSE_BYTES,
    CloudSession,
    fetch,
)

log = logging.getLogger(__name__)

MAX_CHANNELS = 9  # channel documents are numbered 1..9
RETRY_REFUSED_CALL_AFTER = timedelta(hours=1)
# Sign-in and refresh answers that mean "this email and password will not work".
_CREDENTIAL_CODES = frozenset(
    {
        "INVALID_EMAIL",
        "EMAIL_NOT_FOUND",
        "INVALID_PASSWORD",
        "INVALID_LOGIN_CREDENTIALS",
        "MISSING_PASSWORD",
        "MISSING_EMAIL",
    }
)
_DEAD_REFRESH_CODES = frozenset(
    {
        "TOKEN_EXPIRED",
        "INVALID_REFRESH_TOKEN",
        "USER_NOT_FOUND",
        "MISSING_REFRESH_TOKEN",
        "INVALID_GRANT_TYPE",
        "PROJECT_NUMBER_MISMATCH",
    }
)
_CREDENTIAL_HINTS = {
    "INVALID_EMAIL": "the email address is not valid",
    "EMAIL_NOT_FOUND": "no such account (UK accounts may belong on the eti provider)",
    "INVALID_PASSWORD": "wrong password",
    "INVALID_LOGIN_CREDENTIALS": "wrong email or password (UK accounts may belong on eti)",
}


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where and as whom the client talks: one provider's identifiers and the four base URLs."""

    provider: str
    api_key: str = field(repr=False)  # public, but long and of no use in a log
    app_id: str
    referer: str
    project_id: str | None
    identitytoolkit_url: str
    securetoken_url: str
    firebase_url: str
    firestore_url: str

    @classmethod
    def resolve(
        cls,
        provider: str,
        *,
        api_key: str = "",
        app_id: str = "",
        referer: str = "",
        project_id: str = "",
        identitytoolkit_url: str = IDENTITYTOOLKIT_URL,
        securetoken_url: str = SECURETOKEN_URL,
        firebase_url: str = FIREBASE_URL,
        firestore_url: str = FIRESTORE_URL,
    ) -> Endpoints:
        """A provider's endpoints; a non-empty identifier given here replaces the provider's."""
        known = PROVIDERS.get(provider)
        if known is None and provider != "custom":
            raise EndpointError("provider", f"unknown provider {provider!r}")
        api_key = api_key or (known.api_key if known else "")
        app_id = app_id or (known.app_id if known else "")
        referer = referer or (known.referer if known else "")
        if not api_key or not referer or not (app_id or project_id):
            raise EndpointError(
                None, "the custom provider needs api_key, referer, and app_id or project_id"
            )
        return cls(
            provider=provider,
            api_key=api_key,
            app_id=app_id,
            referer=referer,
            project_id=project_id or None,
            identitytoolkit_url=identitytoolkit_url.rstrip("/"),
            securetoken_url=securetoken_url.rstrip("/"),
            firebase_url=firebase_url.rstrip("/"),
            firestore_url=firestore_url.rstrip("/"),
        )


@dataclass(frozen=True, slots=True)
class CloudSnapshot:
    """What one poll of the cloud found."""

    profile: UserProfile
    devices: tuple[Device, ...]
    malformed: int  # documents skipped because they could not be parsed
    requests: int  # HTTP requests this poll cost


PasswordSource = Callable[[], str | None]


def devices_query(account_id: str) -> dict[str, Any]:
    """The ``runQuery`` body that lists an account's devices (by its ``accountId``)."""
    return {
        "structuredQuery": {
            "from": [{"collectionId": "devices"}],
            "where": {
                "fieldFilter": {
                    "field": {"fieldPath": "accountId"},
                    "op": "EQUAL",
                    "value": {"stringValue": account_id},
                }
            },
            "orderBy": [{"field": {"fieldPath": "__name__"}, "direction": "ASCENDING"}],
        }
    }


def channel_names(root: str, devices: Sequence[tuple[str, Iterable[int]]]) -> list[str]:
    """The document names of channels, for ``batchGet``: (serial, channel numbers) pairs."""
    return [f"{root}/devices/{serial}/channels/{n}" for serial, numbers in devices for n in numbers]


class ThermoworksClient:
    """One ThermoWorks account's session with the cloud; safe to share between threads."""

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        timeout: float = 15.0,
        deadline: float = DEFAULT_DEADLINE,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        auth_wait: float | None = None,
        refresh_margin: float = 300.0,
        email: str | None = None,
        tokens: Tokens | None = None,
        password: PasswordSource | None = None,
        on_tokens: Callable[[Tokens], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        session: requests.Session | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.email = email
        self.timeout = timeout
        self.deadline = deadline
        self.max_response_bytes = max_response_bytes
        # A holder of the sign-in lock makes two requests at most (a refresh, then a
        # sign-in), then stores the tokens: the second is for that.
        self.auth_wait = 2 * deadline + 1 if auth_wait is None else auth_wait
        self.refresh_margin = refresh_margin
        self._tokens = tokens
        self._password = password
        self._on_tokens = on_tokens
        self._clock = clock
        self._http = session or CloudSession()
        self._own_session = session is None
        self._auth_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._project_id = self.endpoints.project_id
        self._lifetime: float | None = None  # seconds, as the last token answer said
        self._profile: UserProfile | None = None
        self._channels: dict[str, tuple[int, ...]] = {}  # serial -> known channel numbers
        self._refused_until: dict[str, datetime] = {}  # cheaper calls the cloud refused
        self._poll_lock = threading.Lock()
        self.requests_made = 0

    def __repr__(self) -> str:
        return f"<ThermoworksClient {self.endpoints.provider} {self.email or '?'}>"

    def close(self) -> None:
        if self._own_session:
            self._http.close()

    @property
    def tokens(self) -> Tokens | None:
        return self._tokens

    # ------------------------------------------------------------------ authentication

    @contextmanager
    def _authenticating(self) -> Iterator[None]:
        """The sign-in lock, waited for at most ``auth_wait``: a hung sign-in never holds
        the account for ever (and every request under it has its deadline)."""
        if not self._auth_lock.acquire(timeout=self.auth_wait):
            raise SignInBusy(
                "ThermoWorks sign-in: another sign-in or refresh of this account "
                f"has not finished within {self.auth_wait:g} s"
            )
        try:
            yield
        finally:
            self._auth_lock.release()

    def sign_in(self, password: str) -> Tokens:
        """Sign in with email and password; a refusal is never retried here."""
        if not self.email:
            raise InvalidCredentials("ThermoWorks sign-in: no email address given")
        with self._authenticating():
            return self._sign_in_locked(password)

    def _sign_in_locked(self, password: str) -> Tokens:
        body = self._call(
            "signIn",
            "POST",
            f"{self.endpoints.identitytoolkit_url}/v1/accounts:signInWithPassword",
            params={"key": self.endpoints.api_key},
            json={"email": self.email, "password": password, "returnSecureToken": True},
        )
        tokens = self._tokens_from(
            body, id_key="idToken", refresh_key="refreshToken", expires_key="expiresIn"
        )
        tokens = Tokens(
            tokens.id_token, tokens.refresh_token, tokens.expires_at, _text(body, "localId")
        )
        with self._state_lock:
            self._tokens = tokens
            self._profile = None  # the user document is read once per login
        log.info("signed in to the %s cloud as %s", self.endpoints.provider, self.email)
        self._publish(tokens)
        return tokens

    def refresh(self) -> Tokens:
        """Exchange the refresh token for a new id token (re-signing in if it is dead)."""
        with self._authenticating():
            return self._refresh_locked()

    def _refresh_locked(self) -> Tokens:
        current = self._tokens
        if current is None:
            return self._reauthenticate(RefreshTokenInvalid("not signed in to ThermoWorks"))
        try:
            body = self._call(
                "refresh",
                "POST",
                f"{self.endpoints.securetoken_url}/v1/token",
                params={"key": self.endpoints.api_key},
                json={"grant_type": "refresh_token", "refresh_token": current.refresh_token},
            )
        except RefreshTokenInvalid as exc:
            return self._reauthenticate(exc)
        tokens = self._tokens_from(
            body, id_key="id_token", refresh_key="refresh_token", expires_key="expires_in"
        )
        tokens = Tokens(
            tokens.id_token,
            tokens.refresh_token or current.refresh_token,
            tokens.expires_at,
            _text(body, "user_id") or current.uid,
        )
        with self._state_lock:
            self._tokens = tokens
        log.debug("refreshed the ThermoWorks token of %s", self.email)
        self._publish(tokens)
        return tokens

    def _reauthenticate(self, cause: RefreshTokenInvalid) -> Tokens:
        """The refresh token is dead: sign in again if a password is stored, else give up."""
        password = self._password() if self._password is not None else None
        if not password or not self.email:
            raise cause
        log.warning(
            "the ThermoWorks refresh token of %s stopped working; signing in again", self.email
        )
        return self._sign_in_locked(password)

    def _publish(self, tokens: Tokens) -> None:
        if self._on_tokens is not None:
            self._on_tokens(tokens)

    def _tokens_from(
        self, body: Mapping[str, Any], *, id_key: str, refresh_key: str, expires_key: str
    ) -> Tokens:
        id_token = body.get(id_key)
        if not isinstance(id_token, str) or not id_token:
            raise MalformedResponse(f"token answer without {id_key}")
        refresh_token = body.get(refresh_key)
        try:
            lifetime = float(body.get(expires_key) or 3600)
        except (TypeError, ValueError):
            lifetime = 3600.0
        self._lifetime = lifetime
        return Tokens(
            id_token=id_token,
            refresh_token=refresh_token if isinstance(refresh_token, str) else "",
            expires_at=self._clock() + timedelta(seconds=lifetime),
        )

    def _id_token(self) -> str:
        """A usable id token: refreshed ahead of expiry, by one thread only."""
        with self._authenticating():
            tokens = self._tokens
            if tokens is None:
                tokens = self._reauthenticate(RefreshTokenInvalid("not signed in to ThermoWorks"))
            elif tokens.expires_at - self._clock() <= self._margin():
                tokens = self._refresh_locked()
            return tokens.id_token

    def _margin(self) -> timedelta:
        """How early to refresh: the configured margin, at most half the token's life."""
        margin = self.refresh_margin
        if self._lifetime is not None:
            margin = min(margin, self._lifetime / 2)
        return timedelta(seconds=margin)

    def _refresh_after_401(self, refused: str) -> None:
        """Refresh once after a 401, unless another thread already replaced that token."""
        with self._authenticating():
            if self._tokens is not None and self._tokens.id_token != refused:
                return
            self._refresh_locked()

    # ------------------------------------------------------------------ Firestore reads

    def project_id(self) -> str:
        """The Firestore project: configured, or looked up once from the app id."""
        if self._project_id is None:
            body = self._call(
                "lookup",
                "GET",
                f"{self.endpoints.firebase_url}/v1alpha/projects/-/apps/"
                f"{quote(self.endpoints.app_id, safe=':')}/webConfig",
                headers={"x-goog-api-key": self.endpoints.api_key},
            )
            project = body.get("projectId") if isinstance(body, Mapping) else None
            if not isinstance(project, str) or not project:
                raise MalformedResponse("project lookup answer without projectId")
            self._project_id = project
        return self._project_id

    def _root(self) -> str:
        return f"projects/{self.project_id()}/databases/(default)/documents"

    def _url(self, path: str) -> str:
        return f"{self.endpoints.firestore_url}/v1/{quote(self._root(), safe='/()')}{path}"

    def user_profile(self) -> UserProfile:
        """The user document (``accountId``, ``preferredUnits``): read once per login."""
        profile = self._profile
        if profile is not None:
            return profile
        uid = self._uid()
        body = self._data_call("get", "GET", self._url(f"/users/{quote(uid, safe='')}"))
        try:
            profile = parse_user(decode_document(body))
        except MalformedDocument as exc:
            raise MalformedResponse(f"user document: {exc}") from None
        with self._state_lock:
            self._profile = profile
        return profile

    def _uid(self) -> str:
        self._id_token()  # signs in first when needed
        tokens = self._tokens
        if tokens is None or not tokens.uid:
            raise MalformedResponse("the sign-in answer had no user id (localId)")
        return tokens.uid

    def device_documents(self, account_id: str) -> tuple[list[Document], int]:
        """The account's device documents through ``runQuery``, and how many were malformed."""
        query = devices_query(account_id)
        body = self._data_call("runQuery", "POST", self._url(":runQuery"), json=query)
        if not isinstance(body, list):
            raise MalformedResponse("runQuery answer is not a list")
        documents: list[Document] = []
        malformed = 0
        for item in body:
            if not isinstance(item, Mapping) or "document" not in item:
                continue  # progress items without a document are normal
            try:
                documents.append(decode_document(item["document"]))
            except MalformedDocument as exc:
                malformed += 1
                log.warning("skipped a malformed device document: %s", exc)
        return documents, malformed

    def poll(self) -> CloudSnapshot:
        """Everything a poll needs: the account's devices with their channels."""
        with self._poll_lock:
            before = self.requests_made
            profile = self.user_profile()
            device_docs, malformed = self.device_documents(profile.account_id)
            serials = [d.id for d in device_docs]
            channel_docs, bad = self._channel_documents(serials)
            malformed += bad
            devices: list[Device] = []
            for document in device_docs:
                unit = as_unit(document.fields.get("deviceDisplayUnits"))
                probes: list[Probe] = []
                for channel in channel_docs.get(document.id, []):
                    try:
                        probes.append(parse_channel(document.id, channel, unit))
                    except MalformedDocument as exc:
                        malformed += 1
                        log.warning("skipped a malformed channel document: %s", exc)
                try:
                    devices.append(parse_device(document, probes))
                except MalformedDocument as exc:
                    malformed += 1
                    log.warning("skipped a malformed device document: %s", exc)
            with self._state_lock:
                # Forget the channels of devices that left the account.
                for serial in set(self._channels) - set(serials):
                    del self._channels[serial]
            return CloudSnapshot(
                profile=profile,
                devices=tuple(devices),
                malformed=malformed,
                requests=self.requests_made - before,
            )

    def _channel_documents(self, serials: Sequence[str]) -> tuple[dict[str, list[Document]], int]:
        """Every channel document of ``serials`` in as few requests as the cloud allows."""
        out: dict[str, list[Document]] = {s: [] for s in serials}
        malformed = 0
        known = [s for s in serials if s in self._channels]
        unknown = [s for s in serials if s not in self._channels]
        if known and not self._refused("batchGet"):
            try:
                found, missing, malformed = self._batch_get_channels(known)
            except (PermissionDenied, RequestRefused, NotFound) as exc:
                log.info("batchGet refused (%s); listing channels per device instead", exc.code)
                self._refuse("batchGet")
            else:
                for serial, documents in found.items():
                    out[serial] = documents
                # A channel that vanished means the device changed: learn it again.
                changed = sorted({serial for serial, _ in missing})
                with self._state_lock:
                    for serial in changed:
                        self._channels.pop(serial, None)
                known, unknown = [], [*unknown, *changed]
        for serial in [*known, *unknown]:
            documents, bad = self._discover_channels(serial)
            out[serial] = documents
            malformed += bad
        return out, malformed

    def _batch_get_channels(
        self, serials: Sequence[str]
    ) -> tuple[dict[str, list[Document]], list[tuple[str, int]], int]:
        root = self._root()
        names = channel_names(root, [(serial, self._channels[serial]) for serial in serials])
        body = self._data_call(
            "batchGet", "POST", self._url(":batchGet"), json={"documents": names}
        )
        if not isinstance(body, list):
            raise MalformedResponse("batchGet answer is not a list")
        found: dict[str, list[Document]] = {s: [] for s in serials}
        missing: list[tuple[str, int]] = []
        malformed = 0
        for item in body:
            if not isinstance(item, Mapping):
                continue
            if "missing" in item:
                serial, number = _channel_of(str(item["missing"]))
                if serial is not None and number is not None:
                    missing.append((serial, number))
                continue
            if "found" not in item:
                continue
            try:
                document = decode_document(item["found"])
            except MalformedDocument as exc:
                malformed += 1
                log.warning("skipped a malformed channel document: %s", exc)
                continue
            serial, _ = _channel_of(document.name)
            if serial in found:
                found[serial].append(document)
        return found, missing, malformed

    def _discover_channels(self, serial: str) -> tuple[list[Document], int]:
        """A device's channels by listing them, else channel by channel until the first 404."""
        documents: list[Document] = []
        malformed = 0
        path = f"/devices/{quote(serial, safe=':')}/channels"
        if not self._refused("list"):
            try:
                body = self._data_call("list", "GET", self._url(path))
            except (PermissionDenied, RequestRefused) as exc:
                log.info("listing channels refused (%s); reading them one by one", exc.code)
                self._refuse("list")
            except NotFound:
                return [], 0  # the device went away between the query and now
            else:
                raw = body.get("documents", []) if isinstance(body, Mapping) else None
                if not isinstance(raw, list):
                    raise MalformedResponse("channel list answer has no documents list")
                for item in raw:
                    try:
                        documents.append(decode_document(item))
                    except MalformedDocument as exc:
                        malformed += 1
                        log.warning("skipped a malformed channel document: %s", exc)
                self._remember(serial, documents)
                return documents, malformed
        numbers = self._channels.get(serial) or tuple(range(1, MAX_CHANNELS + 1))
        for number in numbers:
            try:
                body = self._data_call("get", "GET", self._url(f"{path}/{number}"))
            except NotFound:
                break
            try:
                documents.append(decode_document(body))
            except MalformedDocument as exc:
                malformed += 1
                log.warning("skipped a malformed channel document: %s", exc)
        self._remember(serial, documents)
        return documents, malformed

    def _refused(self, endpoint: str) -> bool:
        until = self._refused_until.get(endpoint)
        return until is not None and self._clock() < until

    def _refuse(self, endpoint: str) -> None:
        """Stop using a cheaper call for a while; it is tried again later (rules change)."""
        with self._state_lock:
            self._refused_until[endpoint] = self._clock() + RETRY_REFUSED_CALL_AFTER

    def _remember(self, serial: str, documents: Iterable[Document]) -> None:
        numbers = sorted({n for d in documents for n in [_channel_of(d.name)[1]] if n is not None})
        with self._state_lock:
            self._channels[serial] = tuple(numbers)

    # ------------------------------------------------------------------ HTTP

    def _data_call(self, endpoint: str, method: str, url: str, json: Any = None) -> Any:
        """A Firestore call with the bearer token; a 401 refreshes once and retries once."""
        token = self._id_token()
        try:
            return self._call(endpoint, method, url, json=json, bearer=token)
        except TokenExpired:
            log.info("ThermoWorks refused the id token of %s; refreshing once", self.email)
            self._refresh_after_401(token)
            return self._call(endpoint, method, url, json=json, bearer=self._id_token())

    def _call(
        self,
        endpoint: str,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        bearer: str | None = None,
    ) -> Any:
        """One request within the timeout, deadline and size cap; a failure is a CloudError."""
        all_headers = {"Referer": self.endpoints.referer, **(headers or {})}
        if bearer is not None:
            all_headers["Authorization"] = f"Bearer {bearer}"
        if params is None and endpoint not in ("lookup",):
            params = {"key": self.endpoints.api_key}
        started = time.monotonic()
        with self._state_lock:
            self.requests_made += 1
        answer = fetch(
            self._http,
            endpoint,
            method,
            url,
            params=params,
            json=json,
            headers=all_headers,
            timeout=self.timeout,
            deadline=self.deadline,
            max_bytes=self.max_response_bytes,
        )
        elapsed = (time.monotonic() - started) * 1000
        log.debug("%s %s -> %d (%.0f ms)", method, endpoint, answer.status, elapsed)
        if answer.status >= 400:
            raise error_from_response(endpoint, answer.status, answer.headers, answer.content)
        try:
            return loads(answer.content)
        except ValueError:
            raise MalformedResponse(
                f"ThermoWorks {endpoint}: the answer is not JSON ({len(answer.content)} bytes)"
            ) from None


def loads(content: bytes) -> Any:
    """A cloud answer decoded: orjson, in half the time ``json`` takes (every poll decodes
    tens of kilobytes).

    orjson refuses what Python's ``json`` reads beyond the standard (``NaN`` and
    ``Infinity`` literals, a UTF-8 BOM); Firestore sends none of them, but an answer
    ``json`` reads is read rather than refused. An integer past 64 bits becomes a float
    (Firestore's integers are 64-bit, and sent as strings).
    """
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return jsonlib.loads(content)


def _text(body: Any, key: str) -> str | None:
    value = body.get(key) if isinstance(body, Mapping) else None
    return value if isinstance(value, str) and value else None


def _channel_of(name: str) -> tuple[str | None, int | None]:
    """(serial, channel number) from ``.../devices/{serial}/channels/{n}``."""
    parts = name.split("/documents/", 1)[-1].split("/")
    if len(parts) == 4 and parts[0] == "devices" and parts[2] == "channels":
        return parts[1], int(parts[3]) if parts[3].isdigit() else None
    return None, None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (seconds, or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or utcnow())).total_seconds())


def error_from_response(
    endpoint: str, status: int, headers: Mapping[str, str], content: bytes
) -> CloudError:
    """The CloudError for an error answer (Google's ``{"error": {...}}`` shape or not)."""
    message = ""
    state = ""
    try:
        error = loads(content).get("error", {})
        if isinstance(error, Mapping):
            message = str(error.get("message") or "")
            state = str(error.get("status") or "")
    except (ValueError, AttributeError):
        pass
    # Identity Toolkit puts the code first: "TOO_MANY_ATTEMPTS_TRY_LATER : Access to...".
    code = message.split(" ", 1)[0].split(":", 1)[0].strip() if message else ""
    if not code.isupper() or not code.replace("_", "").isalnum():
        code = state or str(status)
    where = f"ThermoWorks {endpoint}"
    if endpoint in ("signIn", "refresh") and status == 400:
        if code == "USER_DISABLED":
            return AccountDisabled(f"{where}: the account is disabled", status=status, code=code)
        if code == "TOO_MANY_ATTEMPTS_TRY_LATER":
            return TooManyAttempts(
                f"{where}: too many attempts, the cloud refuses sign-ins for a while",
                status=status,
                code=code,
            )
        if endpoint == "signIn" and code in _CREDENTIAL_CODES:
            hint = _CREDENTIAL_HINTS.get(code, "refused")
            return InvalidCredentials(f"{where}: {code} ({hint})", status=status, code=code)
        if endpoint == "refresh" and code in _DEAD_REFRESH_CODES:
            return RefreshTokenInvalid(
                f"{where}: the refresh token is no longer valid ({code})", status=status, code=code
            )
    text = f"{where}: HTTP {status} {code}"
    if status == 401:
        return TokenExpired(text, status=status, code=code)
    if status == 403:
        return PermissionDenied(text, status=status, code=code)
    if status == 404:
        return NotFound(text, status=status, code=code)
    if status == 429:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        return RateLimited(text, status=status, code=code, retry_after=retry_after)
    if status >= 500:
        return Unavailable(text, status=status, code=code)
    return RequestRefused(text, status=status, code=code)
