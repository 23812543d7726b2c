"""Clocks: the daemon never reads the time or sleeps except through one of these.

``RealClock`` is the wall clock. ``SimClock`` is simulated time: it runs
``speed`` times faster than real time (the demo, the simulator's ``--speed``),
or, at speed 0, moves only when told to (deterministic tests). The simulator
and the daemon share one ``SimClock`` so that they agree on what time it is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
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


class SimClock:
    """Simulated time: ``start`` plus real elapsed time times ``speed``; speed 0 stands still.

    ``advance`` moves it by hand whatever the speed (tests use speed 0).
    """

    def __init__(
        self, start: datetime, speed: float = 1.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        if speed < 0:
            raise ValueError("speed: must not be negative")
        self.start = ensure_utc(start)
        self.speed = speed
        self._monotonic = monotonic
        self._origin = monotonic()
        self._extra = 0.0
        self._lock = threading.Lock()

    def offset(self) -> float:
        """Seconds of simulated time since ``start``."""
        with self._lock:
            return (self._monotonic() - self._origin) * self.speed + self._extra

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.offset())

    def advance(self, seconds: float | timedelta) -> datetime:
        step = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        with self._lock:
            self._extra += step
        return self.now()

    def set(self, when: datetime | float) -> datetime:
        """Jump to an absolute time or to an offset from ``start``."""
        target = (
            (ensure_utc(when) - self.start).total_seconds()
            if isinstance(when, datetime)
            else float(when)
        )
        return self.advance(target - self.offset())

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """At speed 0 time only moves by hand, so there is nothing to wait for."""
        if self.speed == 0:
            return event.is_set()
        return event.wait(max(seconds, 0.0) / self.speed)
