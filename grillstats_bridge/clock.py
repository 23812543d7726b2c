"""Clocks: the daemon never reads the time or sleeps except through one of these.

``RealClock`` is the wall clock. ``ScaledClock`` runs simulated time faster than
real time (the demo and the simulator's ``--speed``). ``ManualClock`` only moves
when told to, for deterministic tests.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Protocol

from grillstats_bridge.domain import ensure_utc, utcnow


class Clock(Protocol):
    def now(self) -> datetime:
        """The current (possibly simulated) time, aware UTC."""

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait up to ``seconds`` of this clock's time for ``event``; True if it was set."""


class RealClock:
    def now(self) -> datetime:
        return utcnow()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(seconds, 0.0))


class ScaledClock:
    """Simulated time that starts at ``start`` and runs ``speed`` times faster than real time."""

    def __init__(self, start: datetime | None = None, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._start = ensure_utc(start) if start is not None else utcnow()
        self._mono = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(time.monotonic() - self._mono) * self.speed)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(seconds, 0.0) / self.speed)


class ManualClock:
    """Moves only through :meth:`advance` or :meth:`set`; ``wait`` returns at once."""

    def __init__(self, start: datetime) -> None:
        self._now = ensure_utc(start)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = ensure_utc(when)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.is_set()
