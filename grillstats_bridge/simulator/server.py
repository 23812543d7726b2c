"""A fake ThermoWorks cloud on loopback: Firebase sign-in, token refresh, project lookup and
Firestore reads, with the real paths, shapes, quirks and error answers, driven by a scenario.

One HTTP server serves the four Google services under path prefixes
(``/identitytoolkit``, ``/securetoken``, ``/firebase``, ``/firestore``), so the
client's four base URLs can point at it. It checks what the real services check
(API key, Referer, bearer token, that a query is limited to the caller's
account) so that a client that passes here speaks the real protocol.

In-process use (tests, demo)::

    with CloudSimulator("brisket", speed=0) as sim:   # speed 0: the clock moves by hand
        client = ThermoworksClient(sim.endpoints(), email="pitmaster@example.com")
        sim.advance(3600)
        sim.fail_next(503, endpoint="runQuery")
        sim.counts["batchGet"]
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import random
import re
import secrets
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import parse_qs, unquote, urlsplit

from grillstats_bridge.clock import SimClock
from grillstats_bridge.domain import Unit, ensure_utc
from grillstats_bridge.simulator.scenario import (
    AccountSpec,
    ChannelSpec,
    DeviceSpec,
    Event,
    Scenario,
    ScenarioError,
    load_scenario,
    merge_scenarios,
)
from grillstats_bridge.thermoworks.client import Endpoints
from grillstats_bridge.thermoworks.firestore import (
    PLAIN,
    Encoding,
    encode_fields,
    format_timestamp,
)
from grillstats_bridge.thermoworks.providers import PROVIDERS, THERMOWORKS_PROJECT_ID

log = logging.getLogger(__name__)

# The ETI project id is not documented; the simulator gives it a name of its own.
PROJECT_IDS = {"thermoworks": THERMOWORKS_PROJECT_ID, "eti": "eti-cloud-simulated"}
MAX_FAILED_SIGN_INS = 5  # then TOO_MANY_ATTEMPTS_TRY_LATER, as Firebase does
SIGN_IN_LOCKOUT_S = 3600.0
TOO_MANY_ATTEMPTS = (
    "TOO_MANY_ATTEMPTS_TRY_LATER : Access to this account has been temporarily disabled due "
    "to many failed login attempts. You can immediately restore it by resetting your password "
    "or you can try again later."
)
UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
FIRESTORE_ENDPOINTS = frozenset({"get", "list", "runQuery", "batchGet"})


class CloudUrls(TypedDict):
    """The simulator's four base URLs, named as the ``thermoworks`` configuration keys."""

    identitytoolkit_url: str
    securetoken_url: str
    firebase_url: str
    firestore_url: str


@dataclass(slots=True)
class _Fault:
    """A pending answer override: an error, broken JSON, a slow answer or a refusal."""

    type: str
    endpoint: str
    remaining: int | None  # None: until ``until`` (or forever)
    until: float | None = None
    account: str | None = None
    status: int | None = None
    retry_after: float | None = None
    delay: float | None = None
    kind: str | None = None

    def matches(self, endpoint: str, email: str | None, t: float) -> bool:
        if self.until is not None and t >= self.until:
            return False
        if self.account is not None and (email or "").lower() != self.account.lower():
            return False
        if self.endpoint == "any":
            return True
        if self.endpoint == "firestore":
            return endpoint in FIRESTORE_ENDPOINTS
        return self.endpoint == endpoint

    def consume(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1


@dataclass(slots=True)
class _IdToken:
    email: str
    expires: float  # scenario offset


@dataclass(slots=True)
class _AccountState:
    spec: AccountSpec
    password: str = field(repr=False)
    disabled: bool = False
    failed_sign_ins: int = 0
    locked_until: float | None = None
    refresh_tokens: set[str] = field(default_factory=set, repr=False)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the simulator answered (for tests and debugging; no secrets)."""

    endpoint: str
    method: str
    status: int
    account: str | None


class _Answer(Exception):
    """Raised inside a handler to answer at once with this status and body."""

    def __init__(
        self, status: int, body: Any, *, raw: bytes | None = None, headers: Mapping[str, str] = {}
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.raw = raw
        self.headers = dict(headers)


def _google_error(status: int, message: str, state: str | None = None) -> _Answer:
    """Google's error shape; Identity Toolkit answers carry ``errors`` and no ``status``."""
    error: dict[str, Any] = {"code": status, "message": message}
    if state is None:
        error["errors"] = [{"message": message, "domain": "global", "reason": "invalid"}]
    else:
        error["status"] = state
    return _Answer(status, {"error": error})


_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_STATUS_MESSAGES = {
    401: UNAUTHENTICATED,
    403: "Missing or insufficient permissions.",
    404: "Document not found.",
    429: "Quota exceeded.",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
    504: "Deadline exceeded.",
}


def _float32(value: float) -> float:
    """The value as the float32 a device sends, widened again (``225.10000610351562``)."""
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    return result


def _fake_jwt(email: str, uid: str, project: str, issued: float) -> str:
    """An id token shaped like Firebase's (three base64url parts), unique and unguessable."""

    def part(data: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    header = part({"alg": "RS256", "kid": "sim", "typ": "JWT"})
    payload = part(
        {
            "iss": f"https://securetoken.google.com/{project}",
            "aud": project,
            "user_id": uid,
            "sub": uid,
            "email": email,
            "iat": int(issued),
            "nonce": secrets.token_hex(8),
        }
    )
    return f"{header}.{payload}.{secrets.token_urlsafe(64)}"


class CloudSimulator:
    """The fake cloud: a threaded HTTP server on loopback, a scenario and a simulated clock."""

    def __init__(
        self,
        scenario: Scenario | str | Path | list[str | Path] = "brisket",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        start: datetime | None = None,
        seed: int = 0,
    ) -> None:
        if isinstance(scenario, list):
            scenario = merge_scenarios(*(load_scenario(s) for s in scenario))
        elif not isinstance(scenario, Scenario):
            scenario = load_scenario(scenario)
        if start is not None:
            scenario = replace(scenario, start=ensure_utc(start))
        self.scenario = scenario
        self.clock = SimClock(scenario.start, speed)
        self.host = host
        self._port = port
        self.counts: Counter[str] = Counter()
        self.records: list[RequestRecord] = []
        self._lock = threading.RLock()
        self._accounts = {
            a.email.lower(): _AccountState(spec=a, password=a.password, disabled=a.disabled)
            for a in scenario.accounts
        }
        self._id_tokens: dict[str, _IdToken] = {}
        self._issued: list[str] = []  # every token ever issued, for secret-leak tests
        self._faults: list[_Fault] = []
        self._refused: dict[str, float | None] = {}  # endpoint -> until (None: for ever)
        self._applied = 0  # scenario cloud events applied so far
        self._cloud_events = list(scenario.cloud_events())
        self._minmax: dict[tuple[str, int], tuple[float, float, float, float, float]] = {}
        self._random = random.Random(seed)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._held: set[threading.Event] = set()  # slow answers waiting (release_slow ends them)
        self._connections: set[socket.socket] = set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> CloudSimulator:
        if self._server is not None:
            return self
        handler = _make_handler(self)
        server = ThreadingHTTPServer((self.host, self._port), handler)
        server.daemon_threads = True
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(
            # A short poll interval makes stop() quick (tests start many simulators).
            target=server.serve_forever,
            args=(0.05,),
            name="cloud-simulator",
            daemon=True,
        )
        self._thread.start()
        log.info("cloud simulator (%s) listening on %s", self.scenario.name, self.base_url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        self.release_slow()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # kept-alive connections would hold their threads
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        log.info("cloud simulator stopped")

    def __enter__(self) -> CloudSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def urls(self) -> CloudUrls:
        """The four base URLs, as ``thermoworks`` configuration keys."""
        return {
            "identitytoolkit_url": f"{self.base_url}/identitytoolkit",
            "securetoken_url": f"{self.base_url}/securetoken",
            "firebase_url": f"{self.base_url}/firebase",
            "firestore_url": f"{self.base_url}/firestore",
        }

    def endpoints(self, provider: str = "thermoworks", **overrides: str) -> Endpoints:
        """A provider's endpoints, pointing at this simulator (for a client)."""
        urls: dict[str, str] = {k: str(v) for k, v in self.urls().items()} | overrides
        return Endpoints.resolve(provider, **urls)

    # ------------------------------------------------------------------ clock

    def now(self) -> datetime:
        return self.clock.now()

    def advance(self, seconds: float | timedelta) -> datetime:
        """Move simulated time forward (scripted events come due on the next request)."""
        return self.clock.advance(seconds)

    # ------------------------------------------------------------------ inspection

    def request_count(self, *endpoints: str) -> int:
        """Requests answered so far, for the given endpoints (all when none is given)."""
        with self._lock:
            if not endpoints:
                return sum(self.counts.values())
            names = set(endpoints)
            if "firestore" in names:
                names |= FIRESTORE_ENDPOINTS
            return sum(n for k, n in self.counts.items() if k in names)

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.records.clear()

    def issued_secrets(self) -> list[str]:
        """Every password and token of this run: none of them may show in a log or an error."""
        with self._lock:
            passwords = {a.password for a in self._accounts.values()}
            passwords |= {a.spec.password for a in self._accounts.values()}
            return sorted(passwords | set(self._issued))

    def account_uid(self, email: str) -> str:
        return self.scenario.account(email).uid

    # ------------------------------------------------------------------ scripting

    def inject(self, event: Event) -> None:
        """Apply an event now (its ``at`` is ignored; ``until`` is taken from now on)."""
        t = self.clock.offset()
        with self._lock:
            self._apply(event, t)

    def _event(self, type: str, **fields: Any) -> Event:
        return Event(at=self.clock.offset(), type=type, **fields)

    def fail_next(
        self,
        status: int,
        *,
        endpoint: str = "any",
        count: int = 1,
        retry_after: float | None = None,
        account: str | None = None,
    ) -> None:
        """The next ``count`` matching requests answer ``status`` (401, 429, 503...)."""
        self.inject(
            self._event(
                "http_error",
                status=status,
                endpoint=endpoint,
                count=count,
                retry_after=retry_after,
                account=account,
            )
        )

    def malform_next(self, *, endpoint: str = "any", kind: str = "json", count: int = 1) -> None:
        """Broken JSON (``json``) or one broken document (``document``) in the next answers."""
        self.inject(self._event("malformed", endpoint=endpoint, kind=kind, count=count))

    def slow_next(
        self, delay: float, *, endpoint: str = "any", count: int = 1, account: str | None = None
    ) -> None:
        """The next ``count`` matching answers (of ``account``, if given) wait ``delay`` real s."""
        self.inject(
            self._event("slow", endpoint=endpoint, delay=delay, count=count, account=account)
        )

    @property
    def holding(self) -> int:
        """Slow answers being held back right now."""
        with self._lock:
            return len(self._held)

    def release_slow(self) -> None:
        """Every slow answer held right now goes on at once."""
        with self._lock:
            held, self._held = self._held, set()
        for event in held:
            event.set()

    def refuse(self, endpoint: str, *, seconds: float | None = None) -> None:
        """``list`` or ``batchGet`` answer 403 (for ``seconds`` of simulated time, or for ever)."""
        t = self.clock.offset()
        self.inject(
            self._event("refuse", endpoint=endpoint, until=None if seconds is None else t + seconds)
        )

    def expire_tokens(self, email: str | None = None) -> None:
        self.inject(self._event("token_expiry", account=email))

    def revoke_refresh_tokens(self, email: str | None = None) -> None:
        self.inject(self._event("refresh_token_revoked", account=email))

    def change_password(self, email: str, password: str) -> None:
        self.inject(self._event("password_changed", account=email, password=password))

    def disable_account(self, email: str) -> None:
        self.inject(self._event("account_disabled", account=email))

    def unplug(self, serial: str, channel: int | None = None, seconds: float | None = None) -> None:
        t = self.clock.offset()
        until = None if seconds is None else t + seconds
        self.inject(self._event("probe_unplugged", device=serial, channel=channel, until=until))

    def _apply(self, event: Event, t: float) -> None:
        """Make one event take effect at offset ``t`` (caller holds the lock)."""
        kind = event.type
        if event.account is not None and event.account.lower() not in self._accounts:
            raise ValueError(f"no account {event.account!r} in the scenario")
        accounts = (
            [self._accounts[event.account.lower()]]
            if event.account is not None
            else list(self._accounts.values())
        )
        emails = {a.spec.email.lower() for a in accounts}
        if kind in ("device_offline", "probe_unplugged"):
            shifted = replace(event, at=t)
            self.scenario = replace(self.scenario, events=(*self.scenario.events, shifted))
            self._minmax.clear()
        elif kind == "token_expiry":
            for token in self._id_tokens.values():
                if token.email in emails:
                    token.expires = min(token.expires, t)
        elif kind in ("refresh_token_revoked", "password_changed", "account_disabled"):
            for account in accounts:
                account.refresh_tokens.clear()
                if kind == "password_changed" and event.password:
                    account.password = event.password
                if kind == "account_disabled":
                    account.disabled = True
            if kind != "refresh_token_revoked":
                for token in self._id_tokens.values():
                    if token.email in emails:
                        token.expires = min(token.expires, t)
        elif kind == "too_many_attempts":
            for account in accounts:
                account.locked_until = event.until if event.until is not None else t + 3600
        elif kind == "refuse":
            self._refused[event.endpoint] = event.until
        else:
            self._faults.append(
                _Fault(
                    type=kind,
                    endpoint=event.endpoint,
                    remaining=event.count,
                    until=event.until,
                    account=event.account,
                    status=event.status,
                    retry_after=event.retry_after,
                    delay=event.delay,
                    kind=event.kind,
                )
            )

    def _apply_due(self, t: float) -> None:
        while self._applied < len(self._cloud_events) and self._cloud_events[self._applied].at <= t:
            event = self._cloud_events[self._applied]
            self._applied += 1
            log.info("scenario event at %.0fs: %s", event.at, event.type)
            self._apply(event, event.at)

    def _take_fault(self, endpoint: str, email: str | None, t: float) -> _Fault | None:
        self._faults = [
            f
            for f in self._faults
            if (f.remaining is None or f.remaining > 0) and (f.until is None or f.until > t)
        ]
        for fault in self._faults:
            if fault.matches(endpoint, email, t):
                fault.consume()
                return fault
        return None

    # ------------------------------------------------------------------ request handling

    def handle(
        self,
        method: str,
        raw_path: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, dict[str, str], bytes, str, str | None]:
        """Answer one request: (status, headers, body, endpoint name, account email)."""
        split = urlsplit(raw_path)
        path = unquote(split.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        endpoint = _endpoint_of(method, path)
        email: str | None = None
        delay = 0.0
        try:
            with self._lock:
                t = self.clock.offset()
                self._apply_due(t)
                email = self._caller(endpoint, headers, body)
                fault = self._take_fault(endpoint, email, t)
                if fault is not None and fault.type == "slow":
                    delay = fault.delay or 0.0
                    fault = None
            if delay and not self._stopping.is_set():
                # Interruptible: stopping the simulator or release_slow() ends the wait.
                release = threading.Event()
                with self._lock:
                    self._held.add(release)
                try:
                    release.wait(delay)
                finally:
                    with self._lock:
                        self._held.discard(release)
            with self._lock:
                if fault is not None and fault.type == "http_error":
                    raise self._fault_answer(endpoint, fault)
                status, payload = self._route(endpoint, method, path, query, headers, body, t)
                if fault is not None and fault.type == "malformed":
                    if fault.kind == "json":
                        raise _Answer(200, None, raw=json.dumps(payload)[:40].encode())
                    payload = _corrupt_one(payload)
                answer = _Answer(status, payload)
        except _Answer as exc:
            answer = exc
        out_headers = {"Content-Type": "application/json; charset=UTF-8", **answer.headers}
        data = answer.raw if answer.raw is not None else json.dumps(answer.body).encode()
        with self._lock:
            self.counts[endpoint] += 1
            self.records.append(RequestRecord(endpoint, method, answer.status, email))
        return answer.status, out_headers, data, endpoint, email

    def render_query(self, email: str, endpoint: str, body: Mapping[str, Any], t: float) -> bytes:
        """The body of a runQuery or batchGet answer for ``email`` at offset ``t``, as served.

        For benchmarks that render answers ahead of time: no token, fault, event
        or record, so it does not touch what :meth:`handle` serves.
        """
        account = self._accounts[email.lower()]
        root = self.firestore_root(email)
        with self._lock:
            if endpoint == "runQuery":
                payload = self._run_query(root, account, body, t)
            elif endpoint == "batchGet":
                payload = self._batch_get(root, account, body, t)
            else:
                raise ValueError(f"render_query: not a query endpoint: {endpoint}")
        return json.dumps(payload).encode()

    def firestore_root(self, email: str) -> str:
        """The documents root of an account's project (``projects/.../documents``)."""
        account = self._accounts[email.lower()]
        return f"projects/{PROJECT_IDS[account.spec.provider]}/databases/(default)/documents"

    def _fault_answer(self, endpoint: str, fault: _Fault) -> _Answer:
        status = fault.status or 503
        if status == 502:
            return _Answer(
                502,
                None,
                raw=b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                headers={"Content-Type": "text/html"},
            )
        message = _STATUS_MESSAGES.get(status, "Error.")
        if endpoint in ("signIn", "refresh") and status == 400:
            answer = _google_error(400, "INVALID_ARGUMENT")
        else:
            answer = _google_error(status, message, _STATUS_NAMES.get(status, "UNKNOWN"))
        if status == 429 and fault.retry_after is not None:
            answer.headers["Retry-After"] = str(round(fault.retry_after))
        return answer

    def _caller(self, endpoint: str, headers: Mapping[str, str], body: bytes) -> str | None:
        """The account a request is made for, when it can be told (for faults and records)."""
        if endpoint == "signIn":
            try:
                email = json.loads(body or b"{}").get("email")
            except (ValueError, AttributeError):
                return None
            return email.lower() if isinstance(email, str) else None
        if endpoint in FIRESTORE_ENDPOINTS:
            token = self._id_tokens.get(_bearer(headers) or "")
            return token.email if token else None
        return None

    def _route(
        self,
        endpoint: str,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        t: float,
    ) -> tuple[int, Any]:
        if endpoint == "unknown":
            raise _google_error(404, f"Method not found: {method} {path}", "NOT_FOUND")
        if endpoint == "lookup":
            return self._lookup(path, headers)
        provider = self._provider(query.get("key"), headers)
        if endpoint == "signIn":
            return self._sign_in(provider, _json_body(body), t)
        if endpoint == "refresh":
            return self._refresh(provider, _token_body(body, headers), t)
        return self._firestore(endpoint, provider, path, headers, body, t)

    def _provider(self, key: str | None, headers: Mapping[str, str]) -> str:
        """Which provider an API key belongs to; Google's answers for a bad key or Referer."""
        if not key:
            raise _google_error(
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
                "PERMISSION_DENIED",
            )
        for name, provider in PROVIDERS.items():
            if key == provider.api_key:
                if headers.get("referer") != provider.referer:
                    referer = headers.get("referer") or "<empty>"
                    raise _google_error(
                        403,
                        f"Requests from referer {referer} are blocked.",
                        "PERMISSION_DENIED",
                    )
                return name
        raise _google_error(
            400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT"
        )

    def _lookup(self, path: str, headers: Mapping[str, str]) -> tuple[int, Any]:
        app_id = path.split("/apps/", 1)[1].rsplit("/webConfig", 1)[0]
        provider = self._provider(headers.get("x-goog-api-key"), headers)
        if PROVIDERS[provider].app_id != app_id:
            raise _google_error(404, f"App {app_id} not found.", "NOT_FOUND")
        project = PROJECT_IDS[provider]
        return 200, {
            "projectId": project,
            "appId": app_id,
            "databaseURL": f"https://{project}.firebaseio.com",
            "storageBucket": f"{project}.appspot.com",
            "locationId": "us-central",
            "authDomain": f"{project}.firebaseapp.com",
            "messagingSenderId": app_id.split(":")[1],
        }

    def _sign_in(self, provider: str, body: Mapping[str, Any], t: float) -> tuple[int, Any]:
        email = body.get("email")
        password = body.get("password")
        if not isinstance(email, str) or not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
            raise _google_error(400, "INVALID_EMAIL")
        if not isinstance(password, str) or not password:
            raise _google_error(400, "MISSING_PASSWORD")
        account = self._accounts.get(email.lower())
        # ThermoWorks' project has email enumeration protection; ETI's answers the old way.
        protected = provider == "thermoworks"
        if account is None or account.spec.provider != provider:
            raise _google_error(
                400, "INVALID_LOGIN_CREDENTIALS" if protected else "EMAIL_NOT_FOUND"
            )
        if account.locked_until is not None and t < account.locked_until:
            raise _google_error(400, TOO_MANY_ATTEMPTS)
        if account.disabled:
            raise _google_error(400, "USER_DISABLED")
        if not secrets.compare_digest(password.encode(), account.password.encode()):
            account.failed_sign_ins += 1
            if account.failed_sign_ins >= MAX_FAILED_SIGN_INS:
                account.locked_until = t + SIGN_IN_LOCKOUT_S
            raise _google_error(
                400, "INVALID_LOGIN_CREDENTIALS" if protected else "INVALID_PASSWORD"
            )
        account.failed_sign_ins = 0
        id_token, refresh_token = self._issue(account, t)
        account.refresh_tokens.add(refresh_token)
        return 200, {
            "kind": "identitytoolkit#VerifyPasswordResponse",
            "localId": account.spec.uid,
            "email": account.spec.email,
            "displayName": account.spec.display_name or "",
            "idToken": id_token,
            "registered": True,
            "refreshToken": refresh_token,
            "expiresIn": str(int(self.scenario.token_lifetime)),
        }

    def _issue(self, account: _AccountState, t: float) -> tuple[str, str]:
        project = PROJECT_IDS[account.spec.provider]
        id_token = _fake_jwt(account.spec.email, account.spec.uid, project, t)
        refresh_token = "AMf-vB" + secrets.token_urlsafe(96)
        self._id_tokens[id_token] = _IdToken(
            account.spec.email.lower(), t + self.scenario.token_lifetime
        )
        self._issued += [id_token, refresh_token]
        return id_token, refresh_token

    def _refresh(self, provider: str, body: Mapping[str, Any], t: float) -> tuple[int, Any]:
        if body.get("grant_type") != "refresh_token":
            raise _google_error(400, "INVALID_GRANT_TYPE")
        token = body.get("refresh_token")
        if not isinstance(token, str) or not token:
            raise _google_error(400, "MISSING_REFRESH_TOKEN")
        owner = next((a for a in self._accounts.values() if token in a.refresh_tokens), None)
        if owner is None:
            known = token in self._issued
            raise _google_error(400, "TOKEN_EXPIRED" if known else "INVALID_REFRESH_TOKEN")
        if owner.spec.provider != provider:
            raise _google_error(400, "PROJECT_NUMBER_MISMATCH")
        if owner.disabled:
            raise _google_error(400, "USER_DISABLED")
        id_token, _ = self._issue(owner, t)
        self._issued.pop()  # the refresh token stays the same, as Firebase's does
        return 200, {
            "access_token": id_token,
            "expires_in": str(int(self.scenario.token_lifetime)),
            "token_type": "Bearer",
            "refresh_token": token,
            "id_token": id_token,
            "user_id": owner.spec.uid,
            "project_id": PROVIDERS[owner.spec.provider].app_id.split(":")[1],
        }

    # ------------------------------------------------------------------ Firestore

    def _firestore(
        self,
        endpoint: str,
        provider: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        t: float,
    ) -> tuple[int, Any]:
        match = _FIRESTORE_PATH.match(path)
        assert match is not None  # _endpoint_of matched it
        project, rest = match.group("project"), match.group("rest")
        token = self._id_tokens.get(_bearer(headers) or "")
        if token is None or t >= token.expires:
            raise _google_error(401, UNAUTHENTICATED, "UNAUTHENTICATED")
        account = self._accounts[token.email]
        if project != PROJECT_IDS[account.spec.provider] or provider != account.spec.provider:
            raise _google_error(403, "Missing or insufficient permissions.", "PERMISSION_DENIED")
        root = f"projects/{project}/databases/(default)/documents"
        if endpoint in self._refused:
            until = self._refused[endpoint]
            if until is None or t < until:
                raise _google_error(
                    403, "Missing or insufficient permissions.", "PERMISSION_DENIED"
                )
            del self._refused[endpoint]
        if endpoint == "runQuery":
            return 200, self._run_query(root, account, _json_body(body), t)
        if endpoint == "batchGet":
            return 200, self._batch_get(root, account, _json_body(body), t)
        parts = rest.strip("/").split("/")
        if endpoint == "list":
            device = self._readable_device(account, parts[1])
            docs = [self._channel_doc(root, device, c, t) for c in device.channels]
            return 200, {"documents": docs}
        if parts[0] == "users" and len(parts) == 2:
            if parts[1] != account.spec.uid:
                raise _google_error(
                    403, "Missing or insufficient permissions.", "PERMISSION_DENIED"
                )
            return 200, self._user_doc(root, account.spec)
        if parts[0] == "devices" and len(parts) == 2:
            return 200, self._device_doc(root, self._readable_device(account, parts[1]), t)
        if parts[0] == "devices" and len(parts) == 4 and parts[2] == "channels":
            device = self._readable_device(account, parts[1])
            channel = _channel_number(parts[3])
            spec = next((c for c in device.channels if c.number == channel), None)
            if spec is None:
                raise _google_error(
                    404, f'Document "{root}/{rest.strip("/")}" not found.', "NOT_FOUND"
                )
            return 200, self._channel_doc(root, device, spec, t)
        raise _google_error(404, f'Document "{root}/{rest.strip("/")}" not found.', "NOT_FOUND")

    def _readable_device(self, account: _AccountState, serial: str) -> DeviceSpec:
        try:
            device = self.scenario.device(serial)
        except KeyError:
            raise _google_error(404, f"Document devices/{serial} not found.", "NOT_FOUND") from None
        if device.account.lower() != account.spec.email.lower():
            raise _google_error(403, "Missing or insufficient permissions.", "PERMISSION_DENIED")
        return device

    def _run_query(
        self, root: str, account: _AccountState, body: Mapping[str, Any], t: float
    ) -> list[Any]:
        query = body.get("structuredQuery")
        if not isinstance(query, Mapping):
            raise _google_error(
                400, "Invalid JSON payload: structuredQuery missing.", "INVALID_ARGUMENT"
            )
        sources = query.get("from")
        if sources != [{"collectionId": "devices"}]:
            raise _google_error(403, "Missing or insufficient permissions.", "PERMISSION_DENIED")
        # The rules only allow a query limited to the caller's own account.
        flt = (query.get("where") or {}).get("fieldFilter") or {}
        if (
            flt.get("field", {}).get("fieldPath") != "accountId"
            or flt.get("op") != "EQUAL"
            or flt.get("value") != {"stringValue": account.spec.account_id}
        ):
            raise _google_error(403, "Missing or insufficient permissions.", "PERMISSION_DENIED")
        read_time = format_timestamp(self.scenario.time(t))
        devices = sorted(self.scenario.devices_of(account.spec.email), key=lambda d: d.serial)
        answer: list[Any] = [
            {"document": self._device_doc(root, d, t), "readTime": read_time} for d in devices
        ]
        # Firestore streams a document-less item now and then (here: always, at the end).
        answer.append({"readTime": read_time, "skippedResults": 0})
        return answer

    def _batch_get(
        self, root: str, account: _AccountState, body: Mapping[str, Any], t: float
    ) -> list[Any]:
        names = body.get("documents")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise _google_error(
                400, "documents: must be a non-empty list of names", "INVALID_ARGUMENT"
            )
        read_time = format_timestamp(self.scenario.time(t))
        answer: list[Any] = []
        for name in names:
            if not name.startswith(root + "/"):
                raise _google_error(
                    400, f'Document name "{name}" lacks "projects/..." prefix', "INVALID_ARGUMENT"
                )
            parts = name[len(root) + 1 :].split("/")
            found: Any = None
            if parts[0] == "devices" and len(parts) in (2, 4):
                device = self._readable_device(account, parts[1])
                if len(parts) == 2:
                    found = self._device_doc(root, device, t)
                elif parts[2] == "channels":
                    number = _channel_number(parts[3])
                    spec = next((c for c in device.channels if c.number == number), None)
                    found = None if spec is None else self._channel_doc(root, device, spec, t)
            elif parts[0] == "users" and len(parts) == 2 and parts[1] == account.spec.uid:
                found = self._user_doc(root, account.spec)
            else:
                raise _google_error(
                    403, "Missing or insufficient permissions.", "PERMISSION_DENIED"
                )
            if found is None:
                answer.append({"missing": name, "readTime": read_time})
            else:
                answer.append({"found": found, "readTime": read_time})
        self._random.shuffle(answer)  # Firestore streams results in no promised order
        return answer

    def _user_doc(self, root: str, account: AccountSpec) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "accountId": account.account_id,
            "email": account.email,
            "preferredUnits": account.preferred_units.value,
            "timeZone": account.time_zone,
            "emailStatus": "verified",
            **account.extra,
        }
        if account.display_name:
            fields["displayName"] = account.display_name
        return _document(f"{root}/users/{account.uid}", fields, self.scenario.start)

    def _device_doc(self, root: str, device: DeviceSpec, t: float) -> dict[str, Any]:
        s = self.scenario
        pushed = s.time(s.last_push(device.serial, t))
        fields: dict[str, Any] = {
            "serial": device.serial,
            "label": device.label,
            "type": device.type,
            "device": device.model,
            "firmware": device.firmware,
            "battery": s.battery(device.serial, t),
            "batteryState": "LOW" if s.battery(device.serial, t) < 20 else "NORMAL",
            "deviceDisplayUnits": device.display_units.value,
            "status": "NORMAL",
            "transmitIntervalInSeconds": int(device.transmit_interval),
            "recordingIntervalInSeconds": int(device.recording_interval),
            "temperatureDeltaTrigger": device.temperature_delta_trigger,
            "heartbeatInterval": int(device.heartbeat_interval),
            "lastSeen": pushed,
            "lastTelemetrySaved": pushed,
            "sessionStart": s.start,
            "accountId": s.account(device.account).account_id,
        }
        if "no_device_id" not in device.quirks:
            fields["deviceId"] = device.serial
        if device.wifi_rssi is not None:
            fields["wifi_stength"] = device.wifi_rssi  # sic: the cloud's spelling
        if device.gateway_rssi is not None:
            fields["gatewayRSSI"] = str(device.gateway_rssi)  # a string in the real cloud
        if device.gateway is not None:
            fields["gatewaySerial"] = device.gateway
        if device.fan is not None:
            fields["fan"] = self._fan(device, t)
        fields.update(device.extra)
        if "sparse" in device.quirks:
            keep = ("serial", "type", "label", "lastSeen", "accountId")
            fields = {k: v for k, v in fields.items() if k in keep}
        return _document(f"{root}/devices/{device.serial}", fields, pushed, _encoding(device))

    def _fan(self, device: DeviceSpec, t: float) -> dict[str, Any]:
        assert device.fan is not None
        sample = self.scenario.sample(device.serial, device.fan.channel, t)
        gap = device.fan.set_temp - (
            sample.value if sample.value is not None else device.fan.set_temp
        )
        state = 1 if gap > 10 else 2 if gap > 0 else 0  # blowing, pulsing, paused
        return {
            "connected": True,
            "connection": device.fan.connection,
            "setTemp": int(device.fan.set_temp),
            "fan_channel": device.fan.channel,
            "state": state,
        }

    def _channel_doc(
        self, root: str, device: DeviceSpec, spec: ChannelSpec, t: float
    ) -> dict[str, Any]:
        s = self.scenario
        sample = s.sample(device.serial, spec.number, t)
        units = spec.unit.value
        # A humidity channel's alarms claim °F in the real cloud.
        alarm_units = "F" if spec.unit is Unit.HUMIDITY else units
        value = self._wire_value(device, sample.value)
        status = "NORMAL"
        if sample.value is None:
            status = "NO PROBE"
        elif spec.alarm_high and spec.alarm_high.enabled and sample.value >= spec.alarm_high.value:
            status = "HIGH"
        elif spec.alarm_low and spec.alarm_low.enabled and sample.value <= spec.alarm_low.value:
            status = "LOW"
        fields: dict[str, Any] = {
            "number": str(spec.number),
            "label": spec.label,
            "value": value,
            "units": units,
            "type": spec.type,
            "status": status,
            "lastSeen": sample.time,
            "lastTelemetrySaved": sample.time,
            "estimatedAlarmStatus": "",
        }
        for key, alarm, high in (
            ("alarmHigh", spec.alarm_high, True),
            ("alarmLow", spec.alarm_low, False),
        ):
            if alarm is None:
                continue
            alarming = (
                sample.value is not None
                and alarm.enabled
                and (sample.value >= alarm.value if high else sample.value <= alarm.value)
            )
            fields[key] = {
                "enabled": alarm.enabled,
                "alarming": alarming,
                "value": int(alarm.value) if alarm.value.is_integer() else alarm.value,
                "units": alarm_units,
            }
        extremes = self._extremes(device, spec, t)
        if extremes is not None:
            low, low_t, top, top_t = extremes
            for key, v, when in (("minimum", low, low_t), ("maximum", top, top_t)):
                fields[key] = {
                    "reading": {"value": self._wire_value(device, v), "units": units},
                    "dateReading": s.time(when),
                }
        fields.update(spec.extra)
        if "sparse" in device.quirks:
            fields = {
                k: v
                for k, v in fields.items()
                if k in ("number", "label", "value", "units", "lastTelemetrySaved")
            }
        return _document(
            f"{root}/devices/{device.serial}/channels/{spec.number}",
            fields,
            sample.time,
            _encoding(device),
        )

    def _wire_value(self, device: DeviceSpec, value: float | None) -> Any:
        if value is None:
            return None
        if "whole_values_as_integers" in device.quirks and float(value).is_integer():
            return int(value)
        if "float32_noise" in device.quirks:
            return _float32(value)
        return float(value)

    def _extremes(
        self, device: DeviceSpec, spec: ChannelSpec, t: float
    ) -> tuple[float, float, float, float] | None:
        """Minimum and maximum since the session start, updated incrementally."""
        s = self.scenario
        key = (device.serial, spec.number)
        pushed = s.last_push(device.serial, t)
        state = self._minmax.get(key)
        if state is None or pushed < state[0]:
            state = (min(0.0, pushed), float("inf"), 0.0, float("-inf"), 0.0)
            scan_from = min(0.0, pushed)
        else:
            scan_from = state[0]
        _, low, low_t, high, high_t = state
        steps = 300  # bounded work per request, whatever the jump in time
        span = pushed - scan_from
        stride = max(device.transmit_interval, span / steps) if span > 0 else 1.0
        x = scan_from
        while x <= pushed + 1e-9:
            v = s.value(device.serial, spec.number, x)
            if v is not None:
                if v < low:
                    low, low_t = v, x
                if v > high:
                    high, high_t = v, x
            x += stride
        self._minmax[key] = (pushed, low, low_t, high, high_t)
        if low == float("inf"):
            return None
        return low, low_t, high, high_t


_FIRESTORE_PATH = re.compile(
    r"^/firestore/v1/projects/(?P<project>[^/]+)/databases/\(default\)/documents(?P<rest>.*)$"
)


def _endpoint_of(method: str, path: str) -> str:
    """The endpoint name requests are counted under."""
    if method == "POST" and path == "/identitytoolkit/v1/accounts:signInWithPassword":
        return "signIn"
    if method == "POST" and path == "/securetoken/v1/token":
        return "refresh"
    if method == "GET" and re.fullmatch(r"/firebase/v1alpha/projects/-/apps/[^/]+/webConfig", path):
        return "lookup"
    match = _FIRESTORE_PATH.match(path)
    if match is None:
        return "unknown"
    rest = match.group("rest")
    if method == "POST" and rest == ":runQuery":
        return "runQuery"
    if method == "POST" and rest == ":batchGet":
        return "batchGet"
    if method == "GET" and re.fullmatch(r"/devices/[^/]+/channels", rest):
        return "list"
    if method == "GET" and re.fullmatch(r"/(users/[^/]+|devices/[^/]+(/channels/[^/]+)?)", rest):
        return "get"
    return "unknown"


def _channel_number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    return value[7:].strip() if value.lower().startswith("bearer ") else None


def _json_body(body: bytes) -> Mapping[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise _google_error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT") from None
    if not isinstance(data, Mapping):
        raise _google_error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
    return data


def _token_body(body: bytes, headers: Mapping[str, str]) -> Mapping[str, Any]:
    """The refresh endpoint takes JSON or a form, as Google's does."""
    if "application/x-www-form-urlencoded" in headers.get("content-type", ""):
        return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    return _json_body(body)


def _encoding(device: DeviceSpec) -> Encoding:
    return Encoding(
        integers_as_numbers="integers_as_numbers" in device.quirks,
        nanosecond_timestamps="nanosecond_timestamps" in device.quirks,
    )


def _document(
    name: str, fields: Mapping[str, Any], updated: datetime, encoding: Encoding = PLAIN
) -> dict[str, Any]:
    return {
        "name": name,
        "fields": encode_fields(fields, encoding),
        "createTime": format_timestamp(updated - timedelta(days=30), nanoseconds=True),
        "updateTime": format_timestamp(updated, nanoseconds=True),
    }


def _corrupt_one(payload: Any) -> Any:
    """Break the first document of an answer so that it cannot be parsed (the rest stay)."""

    def corrupt(document: dict[str, Any]) -> dict[str, Any]:
        fields = dict(document.get("fields", {}))
        fields["value"] = {"integerValue": "not-a-number"}
        fields["lastSeen"] = {"timestampValue": "yesterday"}
        return {**document, "fields": fields}

    if isinstance(payload, list):
        out = list(payload)
        for i, item in enumerate(out):
            for key in ("document", "found"):
                if isinstance(item, dict) and key in item:
                    out[i] = {**item, key: corrupt(item[key])}
                    return out
        return out
    if isinstance(payload, dict) and "documents" in payload and payload["documents"]:
        return {
            **payload,
            "documents": [corrupt(payload["documents"][0]), *payload["documents"][1:]],
        }
    if isinstance(payload, dict) and "fields" in payload:
        return corrupt(payload)
    return payload


def _make_handler(sim: CloudSimulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Google's front ends
        server_version = "ESF"
        sys_version = ""

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without this, Nagle's algorithm and
            # the client's delayed ACK add 40 ms to every answer.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with sim._lock:
                sim._connections.add(self.connection)

        def finish(self) -> None:
            with sim._lock:
                sim._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, out_headers, data, endpoint, _ = sim.handle(method, self.path, headers, body)
            log.debug("%s %s -> %d", method, endpoint, status)
            try:
                self.send_response(status)
                for key, value in out_headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (a timeout): nothing to answer to
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests are logged above, without query strings

    return Handler


def scenario_summary(sim: CloudSimulator) -> Iterator[str]:
    """Lines describing what the simulator serves (for the ``simulate`` command)."""
    s = sim.scenario
    yield f"scenario {s.name}: {s.description}"
    yield f"simulated time starts at {s.start.isoformat()} and runs at {sim.clock.speed:g}x"
    for account in s.accounts:
        devices = ", ".join(f"{d.kind} {d.serial}" for d in s.devices_of(account.email))
        yield f"account {account.email} ({account.provider}): {devices or 'no devices'}"


__all__ = [
    "CloudSimulator",
    "RequestRecord",
    "ScenarioError",
    "SimClock",
    "scenario_summary",
]
