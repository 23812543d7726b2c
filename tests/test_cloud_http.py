"""The cloud client against a hostile loopback server: redirects, huge answers, drips, hangs."""

from __future__ import annotations

import contextlib
import threading
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from grillstats_bridge.accounts.service import cloud_client
from grillstats_bridge.config import ThermoworksConfig
from grillstats_bridge.domain import Tokens
from grillstats_bridge.thermoworks.client import Endpoints, ThermoworksClient
from grillstats_bridge.thermoworks.errors import (
    Action,
    DeadlineExceeded,
    RedirectRefused,
    ResponseTooLarge,
    SignInBusy,
)

EMAIL = "pitmaster@example.com"
PASSWORD = "low-and-slow-225"
MB = 1024 * 1024


class Server:
    """A loopback HTTP server whose every answer is ``behaviour``; it records what it got."""

    def __init__(self, behaviour: str = "ok", *, location: str = "") -> None:
        self.behaviour = behaviour
        self.location = location
        self.received: list[tuple[str, str, bytes]] = []  # method, path, body
        self.got_request = threading.Event()
        self.release = threading.Event()
        self.stop = threading.Event()
        self.sent = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.received.append((self.command, self.path, body))
                server.got_request.set()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    server.respond(self)  # the client may give up, as it should
                self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        write = handler.wfile.write
        if self.behaviour == "redirect":
            handler.send_response(307)
            handler.send_header("Location", self.location)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        elif self.behaviour in ("huge", "huge-declared"):
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            if self.behaviour == "huge-declared":
                handler.send_header("Content-Length", str(300 * MB))
            handler.send_header("Connection", "close")  # the body ends when the socket does
            handler.end_headers()
            chunk = b" " * (64 * 1024)
            while self.sent < 300 * MB and not self.stop.is_set():
                write(chunk)
                self.sent += len(chunk)
        elif self.behaviour == "drip-body":
            body = b'{"idToken": "x", "refreshToken": "y", "localId": "u"}'
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.flush()
            self._drip(handler, body)
        elif self.behaviour == "drip-headers":
            self._drip(handler, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" * 4)
        elif self.behaviour == "hold":
            released = self.release.wait(10)
            handler.send_response(200 if released else 503)
            handler.send_header("Content-Length", "2")
            handler.end_headers()
            write(b"{}")
        else:
            handler.send_response(200)
            handler.send_header("Content-Length", "2")
            handler.end_headers()
            write(b"{}")

    def _drip(self, handler: BaseHTTPRequestHandler, data: bytes) -> None:
        """One byte a second (a second's wait that ends early when the test is over)."""
        for i in range(len(data)):
            handler.wfile.write(data[i : i + 1])
            handler.wfile.flush()
            if self.stop.wait(1.0):
                return

    def close(self) -> None:
        self.stop.set()
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.close()


def client_for(
    url: str,
    *,
    tokens: Tokens | None = None,
    deadline: float = 30.0,
    timeout: float = 5.0,
    **kwargs: object,
) -> ThermoworksClient:
    endpoints = Endpoints.resolve(
        "thermoworks",
        project_id="grill",
        identitytoolkit_url=url,
        securetoken_url=url,
        firebase_url=url,
        firestore_url=url,
    )
    return ThermoworksClient(
        endpoints,
        email=EMAIL,
        tokens=tokens,
        timeout=timeout,
        deadline=deadline,
        **kwargs,  # type: ignore[arg-type]
    )


def fresh_tokens(hours: float) -> Tokens:
    now = datetime.now(UTC)
    return Tokens("id-token-secret", "refresh-token-secret", now + timedelta(hours=hours), "uid")


# ------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("endpoint", ["signIn", "refresh", "firestore"])
def test_no_redirect_is_followed(servers: list[Server], endpoint: str) -> None:
    thief = Server()
    servers.append(thief)
    redirector = Server("redirect", location=f"{thief.url}/steal")
    servers.append(redirector)
    client = client_for(redirector.url, tokens=fresh_tokens(-1 if endpoint == "refresh" else 1))
    with pytest.raises(RedirectRefused) as info:
        if endpoint == "signIn":
            client.sign_in(PASSWORD)
        elif endpoint == "refresh":
            client.refresh()
        else:
            client.user_profile()
    client.close()
    assert len(redirector.received) == 1
    assert thief.received == []  # neither the password nor a token went anywhere else
    assert info.value.status == 307 and info.value.action is Action.BACKOFF
    message = str(info.value)
    assert "\n" not in message and "redirect" in message
    for secret in (PASSWORD, "id-token-secret", "refresh-token-secret"):
        assert secret not in message


# ------------------------------------------------------------------------- size


@pytest.mark.parametrize("behaviour", ["huge", "huge-declared"])
def test_a_huge_answer_is_refused_with_bounded_memory(
    servers: list[Server], behaviour: str
) -> None:
    server = Server(behaviour)
    servers.append(server)
    client = client_for(server.url, max_response_bytes=8 * MB)
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge) as info:
            client.sign_in(PASSWORD)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        client.close()
    assert peak < 40 * MB, f"{peak / MB:.0f} MB traced while refusing a 300 MB answer"
    assert info.value.action is Action.BACKOFF and "8388608 bytes" in str(info.value)


def test_the_size_cap_comes_from_the_configuration(servers: list[Server]) -> None:
    server = Server("huge")
    servers.append(server)
    config = ThermoworksConfig(
        identitytoolkit_url=server.url, max_response_bytes=64 * 1024, request_deadline=7
    )
    client = cloud_client(config, email=EMAIL)
    assert (client.max_response_bytes, client.deadline) == (64 * 1024, 7)
    with pytest.raises(ResponseTooLarge, match="65536 bytes"):
        client.sign_in(PASSWORD)
    client.close()


# ------------------------------------------------------------------------- deadline


@pytest.mark.parametrize("behaviour", ["drip-body", "drip-headers"])
def test_a_dripping_server_fails_at_the_deadline(servers: list[Server], behaviour: str) -> None:
    server = Server(behaviour)
    servers.append(server)
    # every byte comes well within the socket timeout: only the deadline can stop it
    client = client_for(server.url, deadline=1.0, timeout=5.0)
    with pytest.raises(DeadlineExceeded) as info:
        client.sign_in(PASSWORD)
    client.close()
    assert info.value.action is Action.BACKOFF
    assert "within 1 s" in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------------- sign-in lock


def test_a_hung_sign_in_does_not_hold_the_account(servers: list[Server]) -> None:
    server = Server("hold")
    servers.append(server)
    client = client_for(server.url, auth_wait=0.2)
    outcome: list[BaseException] = []

    def first() -> None:
        try:
            client.sign_in(PASSWORD)
        except Exception as exc:  # the held sign-in ends either way; kept for the assert
            outcome.append(exc)

    holder = threading.Thread(target=first)
    holder.start()
    assert server.got_request.wait(10)
    with pytest.raises(SignInBusy) as info:
        client.sign_in(PASSWORD)  # waits at most auth_wait, not for the held sign-in
    server.release.set()
    holder.join(10)
    client.close()
    assert info.value.action is Action.BACKOFF and "0.2 s" in str(info.value)
    assert len(server.received) == 1  # the second never reached the cloud
    assert not holder.is_alive() and outcome  # the held one ended with the answer it got
