"""How good the done-time estimate is: the cook tracker over a library of cook curves.

    python benchmarks/eta.py [--every SECONDS] [--seed SEED ...] [--learn]

Each case is a simulator scenario (grillstats_bridge/simulator/scenarios/) with one
meat probe, its target and its pit. The probe's readings (and the pit's), as a
bridge polling every ``--every`` seconds would get them, go through the pure
``CookTracker`` one poll at a time. Printed per curve: the absolute error of the
"done at" estimate at 25, 50, 75 and 90 % of the cook (from the first reading to
the time the probe first reaches its target), the share of estimates after 50 %
whose band (low..high) holds the actual done time, and each stall as the curve has
it against when it was detected (the event) and dated (its start) and ended.

``--seed`` runs the curves with other jitter and wave phases (the same curves; the
default seed is the scenario's own). ``--learn`` adds, per curve, the same table with
the predictor calibrated by one past cook (``cook.calibration``): the curve run once
before with another seed, its stall length, pace and climb after the stall learned
from its ready and stall events, as the service learns them from the sessions. A curve
cooked by a method the person would declare (the reverse sear) has a second first-cook
row with it declared (``cook.calibration.declared``, the configured sear).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grillstats_bridge.cook.calibration import PastCook, calibrate, declared
from grillstats_bridge.cook.model import (
    NO_CALIBRATION,
    Calibration,
    CookBatch,
    CookEvent,
    CookEventKind,
    CookMethod,
    Estimate,
    Rules,
)
from grillstats_bridge.cook.tracker import CookTracker
from grillstats_bridge.domain import Measurement, Reading, Unit
from grillstats_bridge.simulator.scenario import load_scenario

H = 3600.0
FRACTIONS = (0.25, 0.50, 0.75, 0.90)


@dataclass(frozen=True)
class Case:
    scenario: str
    serial: str
    channel: int
    pit: int | None
    target: float
    stalls: tuple[tuple[float, float], ...] = ()  # (start h, end h) as the curve has them
    long: bool = field(default=True)
    method: CookMethod = CookMethod.AUTO  # as the person would declare it


CASES = (
    Case("brisket", "10:06:1C:6F:47:70", 2, 1, 203.0, ((4.5, 8.5),)),
    Case("wrapped_brisket", "10:06:1C:50:0D:04", 2, 1, 203.0, ((4.25, 6.5),)),
    Case("pork_shoulder", "10:06:1C:50:0A:01", 2, 1, 203.0, ((4.0, 6.25),)),
    Case("whole_chicken", "10:06:1C:50:0B:02", 2, 1, 165.0, (), long=False),
    Case(
        "reverse_sear",
        "10:06:1C:50:0C:03",
        2,
        1,
        130.0,
        (),
        long=False,
        method=CookMethod.REVERSE_SEAR,
    ),
    Case("hot_and_fast", "10:06:1C:3B:55:12", 2, 1, 165.0, (), long=False),
)


@dataclass
class Result:
    case: Case
    cook_hours: float
    errors: dict[float, float | None]  # fraction -> |estimate - actual| in minutes
    inside: float | None  # share of estimates after 50 % whose band holds the done time
    stalls: list[str]
    lesson: PastCook | None = None  # what the cook teaches the next one


def run(
    case: Case, every: float, seed: str = "", calibration: Calibration = NO_CALIBRATION
) -> Result:
    scenario = dataclasses.replace(load_scenario(case.scenario), seed=seed)
    meat = scenario.series(case.serial, case.channel, every=every)
    pit = scenario.series(case.serial, case.pit, every=every) if case.pit is not None else []
    polls: dict[datetime, list[Reading]] = {}
    for reading in [*meat, *pit]:
        polls.setdefault(reading.time, []).append(reading)
    tracker = CookTracker(Rules())
    targets = {(case.serial, case.channel): Measurement(case.target, Unit.FAHRENHEIT)}
    pits = {case.serial: case.pit} if case.pit is not None else {}
    calibrations = {(case.serial, case.channel): calibration}
    estimates: list[Estimate] = []
    events: list[tuple[CookEventKind, datetime, datetime | None]] = []
    sent: list[CookEvent] = []
    for when in sorted(polls):
        step = tracker.step(
            CookBatch(
                now=when,
                readings=polls[when],
                targets=targets,
                pits=pits,
                calibrations=calibrations,
            )
        )
        estimates += step.estimates
        sent += step.events
        events += [(e.kind, e.at, e.stall_start) for e in step.events]
    start = meat[0].time
    done = next(r.time for r in meat if r.value is not None and r.value >= case.target)
    cook = (done - start).total_seconds()
    errors = {f: _error_at(estimates, start + timedelta(seconds=f * cook), done) for f in FRACTIONS}
    late = [e for e in estimates if e.at >= start + timedelta(seconds=cook / 2) and e.at < done]
    banded = [e for e in late if e.low is not None and e.high is not None]
    held = sum(
        1 for e in banded if e.low is not None and e.high is not None and e.low <= done <= e.high
    )
    inside = held / len(late) if late else None
    stalls = _stalls(case, scenario.start, events)
    return Result(case, cook / H, errors, inside, stalls, _lesson(case, sent))


def _lesson(case: Case, events: Sequence[CookEvent]) -> PastCook | None:
    """The past cook a session of this run leaves (its first stall, its ready event)."""
    ready = next((e for e in events if e.kind is CookEventKind.READY), None)
    if ready is None:
        return None
    ended = next((e for e in events if e.kind is CookEventKind.STALL_ENDED), None)
    return PastCook(
        serial=case.serial,
        target=case.target,
        ended=ready.at.timestamp(),
        stall_seconds=ended.stall_seconds if ended is not None else None,
        climb_pace=ready.climb_pace,
        pace=ready.pace,
        sear_at=ready.sear_at,
        sear_seconds=ready.sear_seconds,
    )


def _error_at(estimates: Sequence[Estimate], when: datetime, done: datetime) -> float | None:
    """The error, in minutes, of the last estimate made at or before ``when``."""
    made = [e for e in estimates if e.at <= when]
    if not made or made[-1].done_at is None:
        return None
    return abs((made[-1].done_at - done).total_seconds()) / 60.0


def _stalls(
    case: Case, t0: datetime, events: Sequence[tuple[CookEventKind, datetime, datetime | None]]
) -> list[str]:
    def hours(when: datetime) -> float:
        return (when - t0).total_seconds() / H

    starts = [
        (hours(at), hours(s) if s else None)
        for k, at, s in events
        if k is CookEventKind.STALL_STARTED
    ]
    ends = [hours(at) for k, at, _ in events if k is CookEventKind.STALL_ENDED]
    out = []
    for begin, end in case.stalls:
        found = [s for s in starts if begin - 1 <= s[0] <= end]
        if not found:
            out.append(f"{begin:.2f}-{end:.2f} h: not detected")
            continue
        at, dated = found[0]
        gone = next((e for e in ends if e >= at), None)
        out.append(
            f"{begin:.2f}-{end:.2f} h: detected +{(at - begin) * 60:.0f} min"
            f" (dated {(dated - begin) * 60 if dated is not None else 0:+.0f} min),"
            + (f" ended {(gone - end) * 60:+.0f} min" if gone is not None else " never ended")
        )
    extra = len(starts) - sum(1 for s in starts for b, e in case.stalls if b - 1 <= s[0] <= e)
    if extra > 0:
        out.append(f"{extra} stall(s) reported where the curve has none")
    if not case.stalls and not starts:
        out.append("none (right)")
    return out


def _minutes(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _row(name: str, r: Result) -> str:
    errs = " | ".join(_minutes(r.errors[f]) for f in FRACTIONS)
    band = "-" if r.inside is None else f"{r.inside:.0%}"
    return f"| {name} | {r.cook_hours:.1f} h | {errs} | {band} | {'; '.join(r.stalls)} |"


def learned(case: Case, every: float, seed: str) -> tuple[Result, Calibration]:
    """The curve calibrated by one past cook of it (another seed)."""
    past = run(case, every, seed=f"past|{seed}").lesson
    calibration = (
        calibrate([past], serial=case.serial, target=case.target, now=past.ended + H, rules=Rules())
        if past is not None
        else NO_CALIBRATION
    )
    return run(case, every, seed, calibration), calibration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=60.0, help="poll interval, seconds")
    parser.add_argument(
        "--seed", action="append", default=None, help="another jitter seed (repeatable)"
    )
    parser.add_argument("--learn", action="store_true", help="also with one past cook")
    args = parser.parse_args()
    for seed in args.seed or [""]:
        print(
            f"done-time error in minutes at a share of the cook (readings every {args.every:.0f} s"
            + (f", seed {seed!r})" if seed else ")")
        )
        print("| curve | cook | 25 % | 50 % | 75 % | 90 % | in band after 50 % | stalls |")
        print("|---|---|---|---|---|---|---|---|")
        for case in CASES:
            print(_row(case.scenario, run(case, args.every, seed)))
            if case.method is not CookMethod.AUTO:  # a first cook, its method declared
                told = declared(NO_CALIBRATION, case.method, target=case.target, rules=Rules())
                result = run(case, args.every, seed, told)
                print(_row(f"+ method {case.method} declared", result))
            if args.learn:
                result, c = learned(case, args.every, seed)
                stall = "-" if c.stall_seconds is None else f"{c.stall_seconds / H:.2f} h"
                note = f"{c.past_cooks} past: stall {stall}, pace {c.pace:.2f}"
                if c.sear_at is not None and c.sear_seconds is not None:
                    note += f", sear at {c.sear_at:.0f} °F +{c.sear_seconds / 60:.0f} min"
                print(_row(f"+ learned ({note}, climb {c.climb_pace:.2f})", result))


if __name__ == "__main__":
    main()
