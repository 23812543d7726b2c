"""The pipeline thread's queue: finished polls, batched into one transaction, and jobs.

Poll workers put :class:`PollJob` s, MQTT commands and housekeeping put plain jobs;
one thread takes them in order. Every poll that finished meanwhile goes into the
same batch (up to ``max_batch``), so a busy bridge pays one transaction for many
polls; a job that fails is logged and counted, never fatal; how long the current
job has run is known, so that ``/health`` and the watchdog can tell a stuck
pipeline from a busy one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from grillstats_bridge.domain import Poll
from grillstats_bridge.mqtt.messages import InboundMessage

log = logging.getLogger(__name__)

COMMAND_WAIT_S = 1.0  # at most this long; then the command is dropped (the pipeline is stuck)


@dataclass(frozen=True, slots=True)
class PollJob:
    """A finished poll on its way to the pipeline thread (``received``: perf_counter)."""

    poll: Poll
    received: float
    published: frozenset[str] = frozenset()  # the serials published for its account


class _Missing:
    pass


_MISSING = _Missing()
Work = PollJob | Callable[[], None] | None  # None: stop


class WorkQueue:
    """Work for the pipeline thread; ``run_polls`` stores a batch of polls."""

    def __init__(
        self,
        run_polls: Callable[[list[PollJob]], object],
        *,
        max_batch: int,
        on_batch: Callable[[], None] = lambda: None,
        on_error: Callable[[], None] = lambda: None,
    ) -> None:
        self._queue: queue.Queue[Work] = queue.Queue()
        self._held: Work | _Missing = _MISSING  # taken from the queue but not yet run
        self._run_polls = run_polls
        self._max_batch = max_batch
        self._on_batch = on_batch  # a batch was taken: room for more polls
        self._on_error = on_error
        self.busy_since: float | None = None  # monotonic start of the current job

    def put(self, work: Work) -> None:
        self._queue.put(work)

    def qsize(self) -> int:
        return self._queue.qsize()

    def worker(self) -> None:
        """The pipeline thread: run work in order until told to stop (None)."""
        while True:
            work = self._take(block=True)
            if work is None:
                self.drain()  # writes in flight are finished before stopping
                return
            if isinstance(work, PollJob):
                # Every poll that finished meanwhile goes into the same transaction.
                batch = [work]
                while len(batch) < self._max_batch:
                    more = self._take(block=False)
                    if not isinstance(more, PollJob):
                        self._held = more
                        break
                    batch.append(more)
                self._on_batch()
                self._polls(batch)
            elif not isinstance(work, _Missing):
                self.run(work)

    def drain(self) -> None:
        """Run what waits, in this thread (each poll on its own)."""
        while True:
            work = self._take(block=False)
            if isinstance(work, _Missing):
                return
            if isinstance(work, PollJob):
                self._polls([work])
            elif work is not None:
                self.run(work)

    def take_all(self) -> Sequence[Work]:
        """What the pipeline thread has not taken (it is stuck); nothing when it has stopped."""
        work: list[Work] = []
        while not isinstance(item := self._take(block=False), _Missing):
            work.append(item)
        return work

    def _polls(self, batch: list[PollJob]) -> None:
        self.run(lambda: self._run_polls(batch))

    def run(self, job: Callable[[], object]) -> None:
        self.busy_since = time.monotonic()
        try:
            job()
        except Exception:
            self._on_error()
            log.exception("pipeline job failed; carrying on")
        finally:
            self.busy_since = None

    def _take(self, *, block: bool) -> Work | _Missing:
        """The next piece of work (one held back from a batch first); _MISSING when none."""
        if not isinstance(self._held, _Missing):
            work, self._held = self._held, _MISSING
            return work
        try:
            return self._queue.get(block=block)
        except queue.Empty:
            return _MISSING


def gated(
    handler: Callable[[InboundMessage], None],
    submit: Callable[[Callable[[], None]], None],
    slots: threading.BoundedSemaphore,
) -> Callable[[InboundMessage], None]:
    """An MQTT command handler that queues ``handler`` for the pipeline thread, while one of
    ``slots`` is free: beyond them the MQTT dispatcher waits (its bounded inbound queue
    fills and drops instead of the pipeline's growing), at most ``COMMAND_WAIT_S``."""

    def queue_command(message: InboundMessage) -> None:
        if not slots.acquire(timeout=COMMAND_WAIT_S):
            log.warning("MQTT command on %r dropped: the pipeline is busy", message.topic[:80])
            return

        def run() -> None:
            try:
                handler(message)
            finally:
                slots.release()

        submit(run)

    return queue_command


def stuck(threads: Sequence[threading.Thread], work: WorkQueue, limit: float) -> str | None:
    """Why the bridge no longer works (a dead thread, a job hung for long), or None."""
    dead = [t.name for t in threads if not t.is_alive()]
    if dead:
        return f"worker thread(s) {', '.join(dead)} died"
    busy_since = work.busy_since
    if busy_since is not None and time.monotonic() - busy_since > limit:
        return f"the pipeline has been stuck in one job for {limit:.0f} s"
    return None
