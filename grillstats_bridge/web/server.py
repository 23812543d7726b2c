"""uvicorn in a thread of its own, on a socket bound before it starts.

Binding first means the address (port 0: any free one) is known, and connections
made before the server loop runs wait in the listen backlog instead of being
refused: nothing has to sleep until the server is up. uvicorn answers 503 beyond
``max_connections`` concurrent connections and drops a keep-alive connection idle
for ``idle_timeout`` seconds, as the standard-library health server did.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

import uvicorn

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 5
MAX_CONNECTIONS = 64  # pages poll; a few browsers and scripts, never thousands


class WebServer:
    """Serve an ASGI app on ``host:port`` until :meth:`stop`."""

    def __init__(
        self,
        host: str,
        port: int,
        app: Any,
        *,
        idle_timeout: int = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and
        # without it a keep-alive request waited 40 ms for the delayed ACK (Nagle)
        self._socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self._socket.listen(128)
        config = uvicorn.Config(
            app,
            log_config=None,  # ours: uvicorn's loggers propagate to the root logger
            access_log=False,
            timeout_keep_alive=idle_timeout,
            limit_concurrency=max_connections,
            server_header=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="web-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def base_url(self) -> str:
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/health"

    def start(self) -> None:
        self._thread.start()
        log.info("web app on %s/ (health on %s)", self.base_url, self.url)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._socket.close()

    def _serve(self) -> None:
        # uvicorn installs no signal handlers outside the main thread
        asyncio.run(self._server.serve(sockets=[self._socket]))
