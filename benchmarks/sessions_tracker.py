"""Throughput of the pure session tracker (run by hand: python benchmarks/sessions_tracker.py).

Many devices with four probes each, half of them cooking (a fire-up, a steady pit
with noise and a lid-open dip, a rising meat probe, the cooldown), half idle,
pushing every 15 s, seen through accounts of ten devices each: what the daemon
feeds the tracker. The readings are built first; only the tracker is timed.
It also checks that the work per reading does not grow with the cook's length.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grillstats_bridge.config import SessionsConfig
from grillstats_bridge.domain import Device, Poll, Reading, Unit
from grillstats_bridge.sessions.model import ChangeKind, Rules
from grillstats_bridge.sessions.tracker import SessionTracker

T0 = datetime(2026, 7, 11, 14, 0, tzinfo=UTC)
PUSH = 15.0


def values(device: int, t: float) -> list[float | None]:
    if device % 2:  # idle: a logger in a kitchen
        base = 70.0 + 3 * math.sin(t / 5000 + device)
        return [base, base + 0.5, None, None]
    fire = 600.0 + device * 7
    if t < fire:
        pit = 65.0
    else:
        pit = 250.0 - 185.0 * math.exp(-(t - fire) / 480) + 4 * math.sin(t / 37)
        if 3600 <= t % 10800 < 3780:
            pit -= 90.0
    meat = 250.0 - 212.0 * math.exp(-t / 19000)
    return [pit, meat, meat - 10.0, None]


def build(devices: int, hours: float, per_account: int) -> tuple[list[Poll], int]:
    polls: list[Poll] = []
    count = 0
    steps = int(hours * 3600 / PUSH)
    for step in range(steps):
        t = step * PUSH
        when = T0 + timedelta(seconds=t)
        for first in range(0, devices, per_account):
            batch = range(first, min(first + per_account, devices))
            readings = tuple(
                Reading(serial=f"DEV-{d}", channel=ch + 1, time=when, value=v, unit=Unit.FAHRENHEIT)
                for d in batch
                for ch, v in enumerate(values(d, t))
            )
            count += len(readings)
            polls.append(
                Poll(
                    user_id=first // per_account,
                    polled_at=when,
                    devices=tuple(
                        Device(serial=f"DEV-{d}", last_seen=when, transmit_interval_s=15)
                        for d in batch
                    ),
                    readings=readings,
                )
            )
    return polls, count


def run(polls: list[Poll]) -> tuple[float, int, int]:
    tracker = SessionTracker(Rules.from_config(SessionsConfig()))
    started = ended = 0
    begin = time.perf_counter()
    for poll in polls:
        for change in tracker.observe_poll(poll):
            if change.kind is ChangeKind.STARTED:
                started += 1
            elif change.kind in (ChangeKind.ENDED, ChangeKind.CANCELLED):
                ended += 1
    return time.perf_counter() - begin, started, ended


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--hours", type=float, default=4.0)
    parser.add_argument("--per-account", type=int, default=10)
    args = parser.parse_args()

    polls, count = build(args.devices, args.hours, args.per_account)
    elapsed, started, ended = run(polls)
    print(
        f"{count:,} readings from {args.devices} devices over {args.hours:g} h "
        f"({len(polls):,} polls): {elapsed:.2f} s, {count / elapsed:,.0f} readings/s, "
        f"{elapsed / count * 1e6:.2f} µs/reading; {started} sessions started, {ended} ended"
    )
    # O(1) per reading: the cost of a reading late in a long cook is that of an early one.
    polls, _ = build(args.devices // 4 or 1, 12.0, args.per_account)
    tracker = SessionTracker(Rules.from_config(SessionsConfig()))
    slices = []
    per_slice = len(polls) // 6
    for i in range(6):
        chunk = polls[i * per_slice : (i + 1) * per_slice]
        n = sum(len(p.readings) for p in chunk)
        begin = time.perf_counter()
        for poll in chunk:
            tracker.observe_poll(poll)
        slices.append(f"{(time.perf_counter() - begin) / n * 1e6:.2f}")
    print(f"µs/reading in each 2 h of a 12 h cook: {' '.join(slices)}")


if __name__ == "__main__":
    main()
