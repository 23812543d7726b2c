"""Cost of building a device's Home Assistant publication (configs memoised, states built).

    python benchmarks/ha_states.py [--rounds N]

The five sample devices (``tests/sample_devices.py``), each with a target alert and a
cook estimate on its first temperature probe, as the publisher builds them at every
poll (``device_publication`` with its config memo) and after a cook update (the same
device, only the estimate changed). Prints µs per device, best of five, CPU time.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grillstats_bridge.config import MqttConfig
from grillstats_bridge.domain import Measurement, Unit
from grillstats_bridge.ha.cook_entities import ProbeCook
from grillstats_bridge.ha.entities import DeviceView, ProbeAlerts
from grillstats_bridge.ha.payloads import ConfigMemo, device_publication
from grillstats_bridge.ha.publisher import naming_for
from tests.sample_devices import sample_devices

NOW = datetime(2026, 11, 27, 18, 30, tzinfo=UTC)


def views(step: int, minutes: float) -> list[DeviceView]:
    out = []
    for device in sample_devices(NOW, step=step):
        channel = min(p.channel for p in device.probes)
        alerts = (ProbeAlerts(channel=channel, target=Measurement(203.0, Unit.FAHRENHEIT)),)
        cook = (
            ProbeCook(
                channel=channel,
                state="cooking",
                done_at=NOW + timedelta(minutes=minutes),
                minutes_left=minutes,
                progress=50.0,
                method="curve",
            ),
        )
        out.append(DeviceView.of(device, NOW, alerts=alerts, cook=cook))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    naming = naming_for(MqttConfig(instance_id="bench"))
    memo = ConfigMemo()
    polls = [views(step % 7, 120.0) for step in range(args.rounds)]
    for view in polls[0]:
        device_publication(naming, view, memo=memo)

    def run(label: str, rounds: list[list[DeviceView]]) -> None:
        best = float("inf")
        for _ in range(5):
            started = time.process_time()
            for round_views in rounds:
                for view in round_views:
                    device_publication(naming, view, memo=memo)
            best = min(best, time.process_time() - started)
        n = sum(len(r) for r in rounds)
        print(f"{label:28s} {best / n * 1e6:6.1f} us per device")

    run("poll (new values)", polls)
    cooked = [
        [replace(v, cook=(replace(v.cook[0], minutes_left=100.0 - i % 50),)) for v in polls[0]]
        for i in range(args.rounds)
    ]
    run("cook update (same device)", cooked)


if __name__ == "__main__":
    main()
