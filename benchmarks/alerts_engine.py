"""Alert throughput, run by hand: readings judged per second by the engine and by the service.

    PYTHONPATH=. /work/venv/bin/python benchmarks/alerts_engine.py [--devices 250] [--minutes 20]
        [--db sqlite:////tmp/bench.db | postgresql+psycopg2://postgres@127.0.0.1:5432/DB]

Every device has four probes sampled every 5 s: probe 1 carries a target and a
range alert, probe 2 a rising and a falling alert, probe 3 a target alert, probe 4
none. Temperatures climb slowly with noise, so alerts fire now and then. Readings
are built first; only judging them is timed. The engine is fed one poll (one
device's four readings) per call, as the daemon will. With --db the same polls go
through AlertService.process in one transaction per poll (the database must be
migrated to head; users, devices and alerts are created and left there).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from grillstats_bridge.alerts.engine import AlertEngine, AlertKind, AlertRule, AlertSettings
from grillstats_bridge.domain import Reading, Unit

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def rules_for(devices: int) -> list[AlertRule]:
    rules: list[AlertRule] = []
    for d in range(devices):
        serial = f"DEV{d:05d}"
        for channel, kind, values in [
            (1, AlertKind.TARGET, {"target": 203.0}),
            (1, AlertKind.RANGE, {"low": 150.0, "high": 240.0}),
            (2, AlertKind.RISING, {"threshold": 15.0}),
            (2, AlertKind.FALLING, {"threshold": 15.0}),
            (3, AlertKind.TARGET, {"target": 95.0, "unit": Unit.CELSIUS}),
        ]:
            rules.append(
                AlertRule(
                    id=len(rules) + 1,
                    serial=serial,
                    channel=channel,
                    kind=kind,
                    user_id=1,
                    **values,  # type: ignore[arg-type]
                )
            )
    return rules


def polls_for(devices: int, minutes: int) -> list[list[Reading]]:
    rng = random.Random(42)
    polls: list[list[Reading]] = []
    for step in range(minutes * 12):
        t = T0 + timedelta(seconds=5 * step)
        for d in range(devices):
            base = 120 + (step / 12) * 5 + d % 30  # +5 °F a minute, devices staggered
            polls.append(
                [
                    Reading(
                        serial=f"DEV{d:05d}",
                        channel=channel,
                        time=t,
                        value=round(base + rng.uniform(-1.5, 1.5), 1),
                        unit=Unit.FAHRENHEIT,
                    )
                    for channel in (1, 2, 3, 4)
                ]
            )
    return polls


def bench_engine(rules: Sequence[AlertRule], polls: Sequence[Sequence[Reading]]) -> None:
    engine = AlertEngine(rules, AlertSettings())
    count = sum(len(p) for p in polls)
    fired = 0
    start = time.perf_counter()
    for poll in polls:
        fired += len(engine.process(poll, poll[0].time))
    elapsed = time.perf_counter() - start
    print(
        f"engine:  {count:,} readings, {len(rules):,} rules, {fired:,} firings "
        f"in {elapsed:.2f} s = {count / elapsed:,.0f} readings/s "
        f"({elapsed / len(polls) * 1e6:.1f} µs per 4-reading poll)"
    )


def bench_service(url: str, devices: int, polls: Sequence[Sequence[Reading]]) -> None:
    import sqlalchemy as sa

    from grillstats_bridge.alerts.service import AlertService
    from grillstats_bridge.config import AlertsConfig, DatabaseConfig
    from grillstats_bridge.store.db import Database
    from grillstats_bridge.store.models import Device, TemperatureAlert, User

    database = Database(DatabaseConfig(url=url))
    with database.transaction() as session:
        user = User(email=f"bench-{time.time_ns()}@example.com", password_hash="x")
        session.add(user)
        session.flush()
        for rule in rules_for(devices):
            if rule.channel == 1 and rule.kind is AlertKind.TARGET:
                session.add(Device(user_id=user.id, device_id=rule.serial))
            session.add(
                TemperatureAlert(
                    user_id=user.id,
                    device_id=rule.serial,
                    probe_id=str(rule.channel),
                    alert_type=rule.kind.value,
                    target_temperature=rule.target,
                    min_temperature=rule.low,
                    max_temperature=rule.high,
                    threshold_value=rule.threshold,
                    temperature_unit=rule.unit.value,
                )
            )
    service = AlertService(AlertsConfig())
    with database.transaction() as session:
        service.load(session, now=T0)
    count = sum(len(p) for p in polls)
    fired = 0
    latencies: list[float] = []
    start = time.perf_counter()
    for poll in polls:
        begin = time.perf_counter()
        with database.transaction() as session:
            fired += len(service.process(session, poll, poll[0].time))
        latencies.append(time.perf_counter() - begin)
    elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)]
    print(
        f"service: {database.dialect}, one transaction per poll: {count:,} readings, "
        f"{fired:,} firings in {elapsed:.2f} s = {count / elapsed:,.0f} readings/s, "
        f"p99 {p99 * 1e3:.2f} ms per poll"
    )
    with database.transaction() as session:
        stored = session.scalar(sa.select(sa.func.count()).select_from(TemperatureAlert))
    print(f"         ({stored:,} alerts in the database)")
    database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=250)
    parser.add_argument("--minutes", type=int, default=20, help="simulated cook length")
    parser.add_argument("--db", help="also time AlertService.process on this database URL")
    args = parser.parse_args()
    rules = rules_for(args.devices)
    polls = polls_for(args.devices, args.minutes)
    bench_engine(rules, polls)
    if args.db:
        bench_service(args.db, args.devices, polls)


if __name__ == "__main__":
    main()
