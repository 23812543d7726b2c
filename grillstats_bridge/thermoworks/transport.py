"""HTTP for the cloud client: no redirect, a size cap and a total deadline on every request.

A redirect is never followed: a 307 from the sign-in or token endpoint would
re-send the email and password, or the refresh token, to wherever it points,
and Google's REST endpoints never answer a call with one (so there is nothing
to gain from following even a same-host HTTPS redirect for Firestore).

An answer is read in chunks and refused as soon as it passes the size cap (it
is never read whole first). The socket timeout bounds each wait, not the whole
request: a server that sends a byte a second never trips it. So every request
also has a total deadline: a single watchdog thread shuts down the connection
of any request still running at its deadline, headers included.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager

from grillstats_bridge.thermoworks.errors import (
    CloudTimeout,
    DeadlineExceeded,
    RedirectRefused,
    ResponseTooLarge,
    Unavailable,
)

DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
DEFAULT_DEADLINE = 60.0
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole answer, read within the cap and the deadline."""

    status: int
    headers: Mapping[str, str]
    content: bytes


class _Watch:
    """One request's deadline and the connection it is using."""

    __slots__ = ("connection", "deadline", "done", "fired")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.connection: HTTPConnection | None = None
        self.fired = False
        self.done = False


class _Watchdog:
    """One thread for the process that cuts the connection of every request past its deadline.

    Firing and finishing happen under one lock, so a finished request's connection
    (back in the pool, maybe already another request's) is never cut.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, watch: _Watch) -> None:
        with self._cond:
            heapq.heappush(self._heap, (watch.deadline, next(self._order), watch))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="cloud-deadline", daemon=True
                )
                self._thread.start()
            if self._heap[0][2] is watch:  # wake the thread only for an earlier deadline
                self._cond.notify()

    def attach(self, watch: _Watch, connection: HTTPConnection) -> None:
        with self._cond:
            watch.connection = connection
            if watch.fired:
                _cut(connection)

    def finish(self, watch: _Watch) -> None:
        with self._cond:
            watch.done = True
            watch.connection = None
            # Requests mostly end in the order they began: drop them here, so the
            # thread wakes only when a deadline really passes.
            while self._heap and self._heap[0][2].done:
                heapq.heappop(self._heap)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, _, watch = heapq.heappop(self._heap)
                    if not watch.done:
                        watch.fired = True
                        if watch.connection is not None:
                            _cut(watch.connection)
                self._cond.wait(self._heap[0][0] - now if self._heap else None)


def _cut(connection: HTTPConnection) -> None:
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # the blocked read returns at once


_WATCHDOG = _Watchdog()
_current = threading.local()  # the watch of the request this thread is making


def _attach_current(connection: HTTPConnection) -> None:
    watch: _Watch | None = getattr(_current, "watch", None)
    if watch is not None:
        _WATCHDOG.attach(watch, connection)


class _WatchedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach_current(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        _attach_current(self)  # the TLS handshake can be dripped too
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach_current(self)
        super().request(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """The standard adapter, with connections the watchdog can cut (SOCKS proxies aside)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is ProxyManager:
            manager.pool_classes_by_scheme = _POOLS
        return manager


class _HeadersOnly(requests.auth.AuthBase):
    """Authentication is the Authorization header each call sets; nothing else applies."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


class CloudSession(requests.Session):
    """A requests session for the cloud: connections the deadline can cut, and the
    environment's proxy and CA settings read once per host.

    requests reads them (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``...) for
    every request: a third of a poll's client time. The daemon's environment does not
    change while it runs, so the answer for a host is kept.
    """

    def __init__(self) -> None:
        super().__init__()
        # Without a session auth, requests looks for ~/.netrc at every request (a stat
        # call) and would let an entry there replace our bearer token.
        self.auth = _HeadersOnly()
        self.mount("https://", _WatchedAdapter())
        self.mount("http://", _WatchedAdapter())
        self._environment: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._environment_lock = threading.Lock()

    def merge_environment_settings(  # type: ignore[override]
        self, url: str, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        parts = urlsplit(url)
        key = (
            parts.scheme,
            parts.netloc,
            tuple(sorted((proxies or {}).items())),
            stream,
            verify,
            cert,
            tuple(sorted(self.proxies.items())),
            self.verify,
            self.cert,
            self.trust_env,
        )
        with self._environment_lock:
            known: Any = self._environment.get(key)
        if known is None:
            known = super().merge_environment_settings(url, proxies, stream, verify, cert)
            with self._environment_lock:
                if len(self._environment) > 64:  # hosts are few; never grow without bound
                    self._environment.clear()
                self._environment[key] = known
        return {k: dict(v) if isinstance(v, dict) else v for k, v in known.items()}


def fetch(
    session: requests.Session,
    endpoint: str,
    method: str,
    url: str,
    *,
    params: Mapping[str, str] | None,
    json: Any,
    headers: Mapping[str, str],
    timeout: float,
    deadline: float,
    max_bytes: int,
) -> Answer:
    """One request, answer read whole; any failure becomes a one-line CloudError.

    The deadline cuts the connection only on a :class:`CloudSession` (or any session
    whose adapter makes watched connections); elsewhere it is checked between chunks.
    """
    where = f"ThermoWorks {endpoint}"
    host = urlsplit(url).netloc
    watch = _Watch(time.monotonic() + deadline)
    _WATCHDOG.add(watch)
    _current.watch = watch
    try:
        response = session.request(
            method,
            url,
            params=params,
            json=json,
            headers=dict(headers),
            timeout=(timeout, timeout),
            allow_redirects=False,
            stream=True,
        )
        with response:
            status = response.status_code
            if 300 <= status < 400:
                target = urlsplit(response.headers.get("Location", "")).netloc or "?"
                raise RedirectRefused(
                    f"{where}: {host} answered HTTP {status}, a redirect to {target}; "
                    "redirects are never followed",
                    status=status,
                )
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(where, host, max_bytes, status)
            body = bytearray()
            for chunk in response.iter_content(_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise _too_large(where, host, max_bytes, status)
                if time.monotonic() > watch.deadline:
                    raise _late(where, host, deadline)
            return Answer(status, response.headers, bytes(body))
    except requests.Timeout:
        if watch.fired:
            raise _late(where, host, deadline) from None
        raise CloudTimeout(f"{where}: no answer from {host} within {timeout:g} s") from None
    except requests.RequestException as exc:
        if watch.fired:
            raise _late(where, host, deadline) from None
        raise Unavailable(f"{where}: cannot reach {host} ({type(exc).__name__})") from None
    finally:
        _current.watch = None
        _WATCHDOG.finish(watch)


def _too_large(where: str, host: str, max_bytes: int, status: int) -> ResponseTooLarge:
    return ResponseTooLarge(
        f"{where}: the answer from {host} is larger than {max_bytes} bytes; refused",
        status=status,
    )


def _late(where: str, host: str, deadline: float) -> DeadlineExceeded:
    return DeadlineExceeded(f"{where}: {host} did not finish its answer within {deadline:g} s")
