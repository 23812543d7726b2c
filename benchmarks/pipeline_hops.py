"""How a batch of polls moves through the house: module hops in Pipeline.process (by hand).

    python benchmarks/pipeline_hops.py [--steps N]

Runs a few warm-up batches of polls (10 devices, half of them cooking, one target
alert) through the daemon's ``Pipeline`` on a temporary SQLite file, then traces
the next ``Pipeline.process`` call: of its first ``--steps`` calls into our own
modules, how many move to another module, and how many of those move back up a
layer (cli > bridge > feature services > their pure engines > ha/store/mqtt/cloud >
kernel). Library frames (SQLAlchemy...) are not counted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sessions_tracker import build

from grillstats_bridge.alerts.service import AlertService
from grillstats_bridge.bridge.pipeline import Pipeline
from grillstats_bridge.config import AlertsConfig, DatabaseConfig, SessionsConfig
from grillstats_bridge.sessions.service import SessionService
from grillstats_bridge.store import migrate
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import Device, TemperatureAlert, User
from grillstats_bridge.store.readings import ReadingBuffer

PURE = ("engine", "tracker", "model", "names", "stats", "state")


def rank(module: str) -> float:
    """The layer of one of our modules (higher: nearer the top)."""
    parts = module.split(".")[1:]
    top = parts[0] if parts else ""
    if top == "cli":
        return 7
    if top == "bridge":
        return 6
    if top in ("alerts", "sessions", "accounts"):
        return 4.5 if len(parts) > 1 and parts[1] in PURE else 5
    if top in ("ha", "store", "simulator", "mqtt", "thermoworks"):
        return 4
    return 1  # config, clock, domain, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=0, help="calls to trace (0: all)")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    database = Database(DatabaseConfig(url=f"sqlite:///{tmp.name}/hops.db"))
    migrate.upgrade(database)
    polls, _ = build(10, 0.5, 10)
    with database.transaction() as db:
        owner = polls[0].user_id
        db.add(User(id=owner, email="u@example.com", password_hash="x"))
        db.flush()
        for d in range(10):
            db.add(Device(user_id=owner, device_id=f"DEV-{d}"))
        db.flush()
        db.add(
            TemperatureAlert(
                user_id=owner,
                device_id="DEV-0",
                probe_id="1",
                alert_type="target",
                target_temperature=500.0,
            )
        )
    pipeline = Pipeline(
        database,
        sessions=SessionService(SessionsConfig()),
        alerts=AlertService(AlertsConfig()),
        buffer=ReadingBuffer(1000),
    )
    for poll in polls[:20]:  # warm: loaded services, devices known, a session running
        pipeline.process([poll], poll.polled_at)
    poll = polls[20]
    calls: list[tuple[str, str]] = []  # (caller's module, callee's module), ours only

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "call" and (not args.steps or len(calls) < args.steps):
            name = frame.f_globals.get("__name__", "")
            if name.startswith("grillstats_bridge."):
                caller = frame.f_back
                while caller is not None and not caller.f_globals.get("__name__", "").startswith(
                    "grillstats_bridge."
                ):
                    caller = caller.f_back  # through library frames (SQLAlchemy's hooks)
                calls.append((caller.f_globals["__name__"] if caller else "", name))
        return None

    sys.setprofile(None)
    sys.settrace(tracer)
    try:
        pipeline.process([poll], poll.polled_at)
    finally:
        sys.settrace(None)
    hops = [(a, b) for a, b in calls if a and a != b]
    up = [(a, b) for a, b in hops if rank(b) > rank(a)]
    kernel = [(a, b) for a, b in hops if rank(b) == 1]
    print(
        f"calls traced: {len(calls)}; calls into another module: {len(hops)} "
        f"({len(kernel)} of them into the kernel); calls back up a layer: {len(up)}"
    )
    seen: dict[tuple[str, str], int] = {}
    for hop in hops:
        seen[hop] = seen.get(hop, 0) + 1
    for (a, b), n in seen.items():
        mark = "^" if rank(b) > rank(a) else " "
        short = (a.removeprefix("grillstats_bridge."), b.removeprefix("grillstats_bridge."))
        print(f"  {mark} {n:3d} x {short[0]} -> {short[1]}")
    database.dispose()
    tmp.cleanup()


if __name__ == "__main__":
    main()
