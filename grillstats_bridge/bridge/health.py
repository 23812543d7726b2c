"""The HTTP health endpoint: ``GET /health`` -> JSON, 200 when healthy, 503 when not.

With ``http.web`` on (the default) the web app serves ``/health`` next to its pages and
API (:func:`serve_http`), with the same JSON; otherwise this module's server does.
The standard library's threading server, in its own thread: a slow client or a
slow check never blocks the polling loop. Anyone who can reach the port can open
connections, so each connection is closed after ``idle_timeout`` seconds without
a request, and at most ``max_connections`` are served at once (a thread each);
one more is answered 503 and closed at once. The report itself is built by a
function the daemon supplies; it must never include a secret.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, TypeAlias

from grillstats_bridge.config import Config
from grillstats_bridge.cook.model import Estimate
from grillstats_bridge.store.db import Database

if TYPE_CHECKING:  # the web app (Starlette, uvicorn, Jinja, asyncio) only when it is on
    from grillstats_bridge.web.server import WebServer

log = logging.getLogger(__name__)

Report = Callable[[], tuple[bool, dict[str, Any]]]

IDLE_TIMEOUT = 5.0
MAX_CONNECTIONS = 16
_BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, but never more than ``max_connections`` threads."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        max_connections: int,
    ) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)
        self._active = 0
        self._count_lock = threading.Lock()

    @property
    def active(self) -> int:
        """Connections being served now (each holds a thread)."""
        return self._active

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(_BUSY)  # a few bytes on a fresh socket: never blocks
            self.shutdown_request(request)
            return
        with self._count_lock:
            self._active += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._count_lock:
            self._active -= 1
        self._slots.release()


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        report: Report,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._report = report
        handler = self._handler_class(idle_timeout)
        self._server = _BoundedServer((host, port), handler, max_connections)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health-http", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def connections(self) -> int:
        """Connections being served now (each holds a thread)."""
        return self._server.active

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}/health"

    def start(self) -> None:
        self._thread.start()
        log.info("health endpoint on %s", self.url)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler_class(self, idle_timeout: float) -> type[BaseHTTPRequestHandler]:
        report = self._report

        class Handler(BaseHTTPRequestHandler):
            server_version = "grillstats-bridge"
            timeout = idle_timeout  # the socket's: an idle or stalled client is dropped

            def do_GET(self) -> None:
                if self.path.split("?", 1)[0].rstrip("/") != "/health":
                    self._send(404, {"error": "not found; try /health"})
                    return
                try:
                    healthy, body = report()
                except Exception:  # a broken check must answer, not hang the client
                    log.exception("health report failed")
                    self._send(503, {"status": "error", "error": "health report failed"})
                    return
                self._send(200 if healthy else 503, body)

            def _send(self, code: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body, default=str, indent=2).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("health: " + format, *args)

        return Handler


Server: TypeAlias = "HealthServer | WebServer"


def serve_http(
    config: Config,
    database: Database,
    report: Report,
    clock: Callable[[], datetime],
    estimates: Callable[[str], Mapping[int, Estimate]] | None = None,
) -> Server:
    """The daemon's HTTP server on ``http.host:http.port``: the web app, or /health alone."""
    http = config.http
    if not http.web:
        return HealthServer(http.host, http.port, report)
    from grillstats_bridge.web.app import create_app
    from grillstats_bridge.web.server import WebServer

    app = create_app(config, database, report=report, clock=clock, estimates=estimates)
    return WebServer(http.host, http.port, app)
