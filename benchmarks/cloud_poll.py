"""Cloud polling cost, run by hand: requests and time per poll against the simulator.

    PYTHONPATH=. /work/venv/bin/python benchmarks/cloud_poll.py [--devices 100] [--polls 50]

One account owns ``--devices`` devices (Signals, RFX gateways and RFX Meat probes
in turn). The client polls the in-process simulator over real HTTP on loopback;
simulated time advances 15 s between polls. Printed: requests per poll for each
channel strategy (batchGet, list, per channel), and the wall time per poll, which
includes the simulator's own work (it is a fair upper bound for the client).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from grillstats_bridge.simulator.scenario import parse_scenario
from grillstats_bridge.simulator.server import CloudSimulator
from grillstats_bridge.thermoworks.client import ThermoworksClient

EMAIL, PASSWORD = "bench@example.com", "bench-password"


def scenario(devices: int) -> dict[str, Any]:
    kinds = [("signals", 4), ("rfx_gateway", 1), ("rfx_meat", 4), ("rfx_meat", 4)]
    out = []
    for i in range(devices):
        kind, channels = kinds[i % len(kinds)]
        serial = f"M1{i:08d}" if kind == "rfx_meat" else f"10:06:1C:{i // 256:02X}:{i % 256:02X}:00"
        out.append(
            {
                "serial": serial,
                "account": EMAIL,
                "kind": kind,
                "channels": [
                    {"number": n, "curve": {"points": [[0, 70], ["2h", 225]], "noise": 1}}
                    for n in range(1, channels + 1)
                ],
            }
        )
    return {
        "name": "bench",
        "duration": "12h",
        "accounts": [{"email": EMAIL, "password": PASSWORD}],
        "devices": out,
    }


def run(devices: int, polls: int, refuse: list[str]) -> tuple[float, float, float]:
    with CloudSimulator(parse_scenario(scenario(devices)), speed=0) as sim:
        for endpoint in refuse:
            sim.refuse(endpoint)
        client = ThermoworksClient(sim.endpoints(), email=EMAIL, clock=sim.now)
        client.sign_in(PASSWORD)
        client.poll()
        client.poll()  # channels learned, refusals noticed
        times, requests = [], []
        for _ in range(polls):
            sim.advance(15)
            started = time.perf_counter()
            snapshot = client.poll()
            times.append(time.perf_counter() - started)
            requests.append(snapshot.requests)
        client.close()
    times.sort()
    return statistics.mean(requests), statistics.median(times), times[int(len(times) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--polls", type=int, default=50)
    args = parser.parse_args()
    for name, refuse in (
        ("batchGet", []),
        ("list per device", ["batchGet"]),
        ("per channel", ["batchGet", "list"]),
    ):
        requests, median, p99 = run(args.devices, args.polls, refuse)
        print(
            f"{args.devices} devices, {name:16} {requests:6.1f} requests/poll  "
            f"median {median * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms"
        )


if __name__ == "__main__":
    main()
