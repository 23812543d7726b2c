"""What one cook tracker step costs: 100 Signals, four probes each, one with a target.

    python benchmarks/cook_step.py [--at HOURS] [--steps N]

The tracker is fed two hours of 15 s polls up to ``--at`` hours into a brisket (the
test suite's curve: a climb, a 3 h stall from 4 h, the climb after it; a pit at 250 °F
with a slow wave and noise), then ``--steps`` more polls are timed one step each.
Printed: the median, the 90th percentile and the mean per step (the devices push a
second apart, so their probes start a new sample in the same steps: a fit every fourth
step, the others counted down).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grillstats_bridge.cook.model import CookBatch, Rules
from grillstats_bridge.cook.tracker import CookTracker
from grillstats_bridge.domain import Measurement, Reading, Unit
from tests.test_cook import T0, brisket

DEVICES = 100
EVERY = 15.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--at", type=float, default=3.0, help="hours into the cook")
    parser.add_argument("--steps", type=int, default=40, help="steps timed")
    args = parser.parse_args()
    rnd = random.Random(1)
    serials = [f"S{i:03d}" for i in range(DEVICES)]
    targets = {(s, 2): Measurement(203.0, Unit.FAHRENHEIT) for s in serials}
    pits = {s: 1 for s in serials}
    tracker = CookTracker(Rules())

    def batch(t: float) -> CookBatch:
        readings = []
        for i, serial in enumerate(serials):
            at = t + i  # the devices' pushes a second apart
            values = (
                (1, 250 + 4 * math.sin(at / 600) + rnd.gauss(0, 1)),
                (2, brisket(at) + rnd.gauss(0, 0.3)),
                (3, 70.0),
                (4, 71.0),
            )
            readings += [
                Reading(
                    serial=serial,
                    channel=channel,
                    time=T0 + timedelta(seconds=at),
                    value=value,
                    unit=Unit.FAHRENHEIT,
                )
                for channel, value in values
            ]
        now = T0 + timedelta(seconds=t + DEVICES)
        return CookBatch(now=now, readings=readings, targets=targets, pits=pits)

    t = args.at * 3600 - 2 * 3600
    while t < args.at * 3600:
        tracker.step(batch(t))
        t += EVERY
    times = []
    for _ in range(args.steps):
        work = batch(t)
        start = time.perf_counter()
        tracker.step(work)
        times.append(time.perf_counter() - start)
        t += EVERY
    times.sort()
    print(
        f"{DEVICES} devices at {args.at:g} h: median {times[len(times) // 2] * 1000:.1f} ms,"
        f" 90th percentile {times[int(len(times) * 0.9)] * 1000:.1f} ms,"
        f" mean {sum(times) / len(times) * 1000:.1f} ms per step"
    )


if __name__ == "__main__":
    main()
