"""``simulate``: run the ThermoWorks cloud simulator on loopback until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from grillstats_bridge.cli.common import Context, add_command, port_number
from grillstats_bridge.domain import utcnow
from grillstats_bridge.errors import UsageError
from grillstats_bridge.simulator.scenario import list_scenarios, load_scenario


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "simulate",
        _simulate,
        "run the ThermoWorks cloud simulator (for the demo, tests and scenario writers)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=port_number, default=8765, help="port (default 8765; 0: any free)"
    )
    p.add_argument(
        "--scenario",
        action="append",
        metavar="NAME|FILE",
        help=f"scenario to serve, repeatable to merge several (shipped: "
        f"{', '.join(list_scenarios())}; default brisket)",
    )
    p.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="simulated seconds per real second (default 1; 0: the clock stands still)",
    )
    p.add_argument(
        "--start",
        default="now",
        help="simulated time 0: now (default), scenario (the file's start), or an ISO time",
    )


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 100000:
        raise argparse.ArgumentTypeError(f"must be 0 to 100000, got {value:g}")
    return value


def _start(text: str) -> datetime | None:
    if text == "now":
        return utcnow().replace(microsecond=0)
    if text == "scenario":
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--start: must be now, scenario or an ISO time, got {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _simulate(args: argparse.Namespace, ctx: Context) -> int:
    # Imported here: every command loads this module, and ``run`` needs no simulator.
    from grillstats_bridge.simulator.server import CloudSimulator, scenario_summary

    names: list[str | Path] = list(args.scenario or ["brisket"])
    for name in names:
        load_scenario(name)  # a bad file is reported before the port is taken
    try:
        sim = CloudSimulator(
            names if len(names) > 1 else names[0],
            host=args.host,
            port=args.port,
            speed=args.speed,
            start=_start(args.start),
        ).start()
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        for line in scenario_summary(sim):
            print(line)
        print(f"listening on {sim.base_url}; point the bridge at it with:")
        print("thermoworks:")
        for key, url in sim.urls().items():
            print(f"  {key}: {url}")
        print("(the accounts' passwords are in the scenario file; Ctrl-C stops)")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sim.stop()
    return 0
