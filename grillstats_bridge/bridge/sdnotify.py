"""systemd's notify protocol (READY, WATCHDOG, STOPPING, STATUS) without a dependency.

It is one datagram to the socket named by $NOTIFY_SOCKET; outside systemd the
variable is unset and every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # abstract namespace
            address = "\0" + address[1:]
        self._address = address or None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watchdog_for_us = usec.isdigit() and (not pid or pid == str(os.getpid()))
        # systemd wants a ping at least every WatchdogSec; we ping at half of it.
        self.watchdog_interval: float | None = int(usec) / 2e6 if watchdog_for_us else None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines (READY=1, STATUS=...); False when not under systemd."""
        if self._address is None:
            return False
        message = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall(message)
            return True
        except OSError as exc:
            log.warning("systemd notification failed: %s", exc)
            return False

    def ready(self, status: str = "running") -> None:
        self.notify(ready=1, status=status)

    def watchdog(self) -> None:
        self.notify(watchdog=1)

    def stopping(self) -> None:
        self.notify(stopping=1, status="stopping")
