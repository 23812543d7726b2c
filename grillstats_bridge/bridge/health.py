"""The HTTP health endpoint: ``GET /health`` -> JSON, 200 when healthy, 503 when not.

The standard library's threading server, in its own thread: a slow client or a
slow check never blocks the polling loop. The report itself is built by a
function the daemon supplies; it must never include a secret.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

Report = Callable[[], tuple[bool, dict[str, Any]]]


class HealthServer:
    def __init__(self, host: str, port: int, report: Report) -> None:
        self._report = report
        handler = self._handler_class()
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health-http", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

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

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        report = self._report

        class Handler(BaseHTTPRequestHandler):
            server_version = "grillstats-bridge"

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
