"""The bridge's counters are written by the poll workers and read by the pipeline thread."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from grillstats_bridge.bridge.status import Stats

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_requests_of_the_last_hour_are_summed_while_polls_note_more() -> None:
    """Summing the last hour's cloud requests while a poll worker notes one raised
    "deque mutated during iteration" (a pipeline job failed)."""
    stats = Stats()
    for n in range(200_000):
        stats.note_requests(T0 + timedelta(microseconds=n), 1)
    now = T0 + timedelta(minutes=30)
    done = threading.Event()

    def poll_worker() -> None:
        n = 0
        while not done.is_set():
            stats.note_requests(now + timedelta(microseconds=n), 2)
            n += 1

    worker = threading.Thread(target=poll_worker)
    worker.start()
    try:
        totals = [stats.requests_last_hour(now) for _ in range(30)]
    finally:
        done.set()
        worker.join()
    assert all(t >= 200_000 for t in totals)
    assert totals == sorted(totals)  # only ever more, none lost
