"""The daemon's pipeline with N simulated devices on PostgreSQL and Mosquitto (run by hand).

    PYTHONPATH=. /work/venv/bin/python benchmarks/pipeline.py --devices 100 --seconds 60
    PYTHONPATH=. /work/venv/bin/python benchmarks/pipeline.py --devices 100 --speed 1 \\
        --seconds 3600 --rss-every 60                  # memory over an hour at the real pace

What runs where:

* this process: a fresh PostgreSQL database (created next to ``--database-url``,
  migrated, dropped at the end), the cloud simulator over real HTTP on loopback
  (sign-in, token refreshes, channel listing; with ``--cloud http`` every
  request) with a generated scenario (Signals with four probes, accounts of
  ``--per-account`` devices, repeated cooks staggered per device, a target alert
  on every device's meat probe and a range alert on every fifth pit), the users
  and their links, one ``devices sync`` so the alerts have their devices;
* a child process: the real :class:`~grillstats_bridge.bridge.daemon.Bridge` with its
  threads (poll workers, pipeline thread, MQTT), on a simulated clock that
  agrees with the simulator's. Its memory is the bridge's alone. With
  ``--processes N``, N of them at once, each process I of N (its own client id and
  will, as ``run --processes N`` makes them); their figures are added up (readings/s,
  CPU) or listed (peak RSS of each). Each account is meant to be polled by one
  process (the account leases of issue 17); the report counts the accounts that
  more than one process polled in the window, and says that their readings were
  counted once per process. The leases share the accounts (``--emulate-leases``,
  which gave each process the accounts whose user id modulo N is its index before
  they were in, is ignored);
* ``mosquitto_sub``: receives every state the bridge publishes, with the time.

The cloud's own time is left out: by default (``--cloud prerendered``) the
simulator renders every Firestore query answer of the run once, before it
(``benchmarks/prerendered.py``; cached in the temp directory), and the bridge's
client gets them from a ``requests`` transport adapter: real Firestore JSON,
decoded by the real client, without the simulator's per-request work competing
for the CPU. ``--cloud http`` keeps the simulator answering every request.

Simulated time runs ``--speed`` times faster than real time, so every
schedule of the daemon (15 s polls while cooking, housekeeping each minute,
token refreshes each hour...) keeps its proportions; by default the speed
offers ``--rate`` readings per second (each device pushes its four probes
every 15 s). The first ``--warmup`` seconds (discovery for every entity) are
left out of the figures.

Measured (over the ``--seconds`` after the warm-up):

* readings/s: readings of the polls the pipeline finished (stored, sessions,
  alerts, published), per real second; "offered" is what the polls brought in;
* poll to publish: from the moment the poll's last cloud answer was received
  (its body read; decoding it is the bridge's work) to (a) *handed*: ``Publisher.publish_devices``
  returned, every changed state of the poll in the MQTT client's outbox; (b)
  *received*: the last of those states arrived at ``mosquitto_sub`` through the
  broker (wall-clock timestamps, one machine). The cloud's own time is not in it;
* CPU: the bridge process's CPU time per reading, by thread; and this process's
  (the simulator's);
* memory: the bridge's peak RSS (VmHWM) and its RSS every ``--rss-every`` s;
* the machine's raw limits, measured in the same run just before the bridge starts
  (``benchmarks/raw_limits.py``, ``--raw-seconds`` each; 0 leaves them out): paho
  QoS 0 and QoS 1 messages/s to the same broker, PostgreSQL batched insert rows/s;
  the bridge's readings/s and states/s are printed as ratios of them, so that a
  change is judged against what the (shared, noisy) machine gave in that run.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from benchmarks import raw_limits
from benchmarks.prerendered import (
    Layout,
    account_ids,
    render,
    serial_accounts,
)
from grillstats_bridge.accounts.service import link_account
from grillstats_bridge.alerts.rules import add_alert
from grillstats_bridge.bridge.poller import poll_and_sync
from grillstats_bridge.config import Config, MqttConfig
from grillstats_bridge.ha.publisher import naming_for
from grillstats_bridge.mqtt.client import MqttClient
from grillstats_bridge.mqtt.retained import read_retained
from grillstats_bridge.simulator.scenario import parse_scenario
from grillstats_bridge.simulator.server import CloudSimulator
from grillstats_bridge.store import migrate
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import User
from grillstats_bridge.store.publications import PublicationStore

PASSWORD = "bench-cloud-password"
PUSH_S = 15.0  # every simulated device pushes its probes this often
PROBES = 4
CYCLE_H = 8.0  # one cook, then the smoker cools and waits for the next
START_H = 3.0  # the run starts this far into the scenario (most devices cooking)
DEFAULT_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


# ------------------------------------------------------------------------------ the scenario


def _cycle(points: list[tuple[float, float]], phase_h: float, hours: float) -> list[list[Any]]:
    """Repeat one cook's keyframes (hours, value) every CYCLE_H, shifted by ``phase_h``."""
    out: list[list[Any]] = [[0, points[0][1]]]
    k = -1
    while (k * CYCLE_H + phase_h) < hours:
        for t, v in points:
            at = (k * CYCLE_H + phase_h + t) * 3600
            if at > out[-1][0]:
                out.append([round(at), v])
        k += 1
    return out


PIT = [
    (0.0, 70.0),
    (0.3, 225.0),
    (2.0, 245.0),
    (5.5, 250.0),
    (6.5, 240.0),
    (7.0, 110.0),
    (7.5, 70.0),
]
MEAT = [
    (0.0, 40.0),
    (0.3, 42.0),
    (2.0, 120.0),
    (3.5, 158.0),
    (4.5, 165.0),
    (6.0, 204.0),
    (7.0, 150.0),
    (7.5, 70.0),
]


def build_scenario(devices: int, per_account: int, hours: float) -> dict[str, Any]:
    accounts = (devices + per_account - 1) // per_account
    out = []
    for i in range(devices):
        phase = (i * 0.618034 % 1.0) * CYCLE_H  # staggered cooks
        pit = {"points": _cycle(PIT, phase, hours), "noise": 2.0, "wave": {"amplitude": 4}}
        meat = {"points": _cycle(MEAT, phase, hours), "noise": 0.3}
        out.append(
            {
                "serial": f"BENCH{i:06d}",
                "account": f"cook{i // per_account}@bench.example.com",
                "kind": "signals",
                "label": f"Smoker {i}",
                "channels": [
                    {"number": 1, "label": "Pit", "curve": pit},
                    {"number": 2, "label": "Meat", "curve": meat},
                    {"number": 3, "label": "Meat 2", "curve": meat, "offset": 3, "lag": "6m"},
                    {"number": 4, "label": "Meat 3", "curve": meat, "offset": -4, "lag": "3m"},
                ],
            }
        )
    return {
        "name": "pipeline-bench",
        "start": "2026-11-28T06:00:00Z",
        "duration": f"{hours}h",
        "accounts": [
            {"email": f"cook{a}@bench.example.com", "password": PASSWORD} for a in range(accounts)
        ],
        "devices": out,
    }


# ------------------------------------------------------------------------------ the parent


def fresh_database(admin_url: str) -> tuple[str, str]:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    name = f"grillstats_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), name


def drop_database(admin_url: str, name: str) -> None:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def prepare(database: Database, config: Config, sim: CloudSimulator, per_account: int) -> int:
    """Users (no bcrypt: the daemon never checks their passwords), links, one sync, alerts."""
    accounts = sim.scenario.accounts
    with database.transaction() as db:
        for n, account in enumerate(accounts):
            db.add(User(id=n + 1, email=account.email, password_hash="-", name=f"Cook {n}"))
    if database.dialect == "postgresql":
        with database.transaction() as db:
            db.execute(sa.text("SELECT setval('users_id_seq', :n)"), {"n": len(accounts)})
    for account in accounts:
        link_account(database, config, account.email, PASSWORD, store_password=True, clock=sim.now)
    for email, result in poll_and_sync(database, config):
        if isinstance(result, Exception):
            raise SystemExit(f"devices sync failed for {email}: {result}")
    alerts = 0
    with database.transaction() as db:
        for i, device in enumerate(sim.scenario.devices):
            add_alert(
                db,
                device.account,
                serial=device.serial,
                probe=2,
                kind="target",
                target=165,
                name="Meat at 165",
            )
            alerts += 1
            if i % 5 == 0:
                add_alert(
                    db,
                    device.account,
                    serial=device.serial,
                    probe=1,
                    kind="range",
                    low=200,
                    high=275,
                    name="Pit out of range",
                )
                alerts += 1
    return alerts


def cleanup_broker(mqtt: MqttConfig, database: Database, seen: set[str]) -> int:
    """Clear every retained topic the bridge published (as ``mqtt cleanup`` does): what its
    database remembers, what the subscriber saw, what the broker still holds."""
    naming = naming_for(mqtt)
    topics = {t for t, _, _ in PublicationStore(database, mqtt.instance_id).load()} | seen
    try:
        topics |= set(
            read_retained(
                mqtt,
                [f"{naming.root}/#", f"{mqtt.discovery_prefix}/#"],
                marker_topic=f"{naming.root}/cleanup-marker/{uuid.uuid4().hex}",
                client_id=f"{mqtt.instance_id}-cleanup",
                timeout=60,
            ).messages
        )
    except Exception as exc:  # what the database and the subscriber know is cleared anyway
        print(f"cleanup: the broker's retained topics not read ({exc})", flush=True)
    client = MqttClient(
        dataclasses.replace(mqtt, max_queue=max(100, 2 * len(topics))),
        status_topic=None,
        client_id=f"{mqtt.instance_id}-clear",
    )
    client.start()
    try:
        client.wait_ready(15)
        for topic in sorted(topics):
            client.clear(topic)
        client.flush(120)
    finally:
        client.stop()
    return len(topics)


def start_subscriber(mqtt: MqttConfig, out: Path) -> subprocess.Popen[bytes]:
    naming = naming_for(mqtt)
    binary = shutil.which("mosquitto_sub")
    if binary is None:
        raise SystemExit("mosquitto_sub is needed (apt install mosquitto-clients)")
    proc = subprocess.Popen(
        [
            binary,
            "-h",
            mqtt.host,
            "-p",
            str(mqtt.port),
            "-q",
            "0",
            "-i",
            f"{mqtt.instance_id}-sub",
            "-t",
            f"{naming.root}/#",
            "-F",
            "%U %t %p",
        ],
        stdout=out.open("wb"),
        stderr=subprocess.DEVNULL,
    )
    marker = f"{naming.root}/subscriber-ready"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        subprocess.run(
            ["mosquitto_pub", "-h", mqtt.host, "-p", str(mqtt.port), "-t", marker, "-m", "x"],
            check=True,
        )
        time.sleep(0.2)
        if marker.encode() in out.read_bytes():
            return proc
    proc.kill()
    raise SystemExit("mosquitto_sub did not receive its own marker")


def received_times(path: Path) -> dict[tuple[str, str], list[float]]:
    """(topic, payload) -> wall-clock times mosquitto_sub received it."""
    out: dict[tuple[str, str], list[float]] = {}
    with path.open("rb") as f:
        for raw in f:
            stamp, _, rest = raw.rstrip(b"\n").partition(b" ")
            topic, _, payload = rest.partition(b" ")
            try:
                t = float(stamp)
            except ValueError:
                continue
            out.setdefault((topic.decode(), payload.decode("utf-8", "replace")), []).append(t)
    return out


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--per-account", type=int, default=10, help="devices per cloud account")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured real seconds")
    parser.add_argument("--warmup", type=float, default=15.0, help="real seconds left out first")
    parser.add_argument(
        "--rate", type=float, default=5000.0, help="readings/s offered: sets --speed (default 5000)"
    )
    parser.add_argument("--speed", type=float, help="simulated seconds per real second")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_ADMIN_URL,
        help="PostgreSQL server (a fresh database is created next to it and "
        "dropped); or a sqlite:/// URL for a temporary file",
    )
    parser.add_argument("--mqtt", default="127.0.0.1:1883", help="broker host:port")
    parser.add_argument("--workers", type=int, default=4, help="polling.workers")
    parser.add_argument(
        "--cloud",
        choices=("prerendered", "http"),
        default="prerendered",
        help="prerendered: Firestore query answers rendered before the run and served to the "
        "bridge's client from a file (default); http: the simulator answers every request",
    )
    parser.add_argument(
        "--render-processes", type=int, default=os.cpu_count() or 1, help=argparse.SUPPRESS
    )
    parser.add_argument("--rss-every", type=float, default=10.0, help="RSS sample period (s)")
    parser.add_argument(
        "--profile", metavar="DIR", help="cProfile the pipeline thread and poll workers into DIR"
    )
    parser.add_argument(
        "--sections",
        nargs="?",
        const=",".join(SECTIONS),
        default="",
        metavar="NAMES",
        help="CPU time (of the calling thread) inside these methods, comma-separated "
        "(bridge.ATTR.PATH, module:Class.method or module.function), per reading and per "
        "call; without NAMES: the poll's and the pipeline's main steps",
    )
    parser.add_argument(
        "--raw-seconds",
        type=float,
        default=3.0,
        help="seconds for each raw limit (paho QoS 0, QoS 1, PostgreSQL inserts); 0: none",
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="bridge processes (PostgreSQL only; default 1)"
    )
    parser.add_argument(
        "--emulate-leases",
        action="store_true",
        help="ignored: the account leases share the accounts among the processes (this gave "
        "each process the accounts whose user id modulo --processes is its index before)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    run(args)


def run(args: argparse.Namespace) -> None:
    if args.processes > 1 and args.database_url.startswith("sqlite"):
        raise SystemExit("--processes: SQLite is one process; use PostgreSQL")
    speed = args.speed or args.rate * PUSH_S / (PROBES * args.devices)
    span_h = START_H + (args.warmup + args.seconds + 30) * speed / 3600 + 1
    tmp = Path(tempfile.mkdtemp(prefix="grillstats-bench-"))
    tag = uuid.uuid4().hex[:8]
    host, _, port = args.mqtt.rpartition(":")
    mqtt = MqttConfig(
        host=host,
        port=int(port),
        instance_id=f"bench{tag}",
        base_topic=f"bench_{tag}",
        discovery_prefix=f"bench_ha_{tag}",
    )
    pg_name = None
    if args.database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp / 'bench.db'}"
    else:
        url, pg_name = fresh_database(args.database_url)
    config = (
        Config()
        .replace("database", url=url)
        .replace("security", key_file=str(tmp / "bench.key"))
        .replace(
            "mqtt",
            **{
                k: getattr(mqtt, k)
                for k in ("host", "port", "instance_id", "base_topic", "discovery_prefix")
            },
        )
        .replace("http", enabled=False)
        .replace("logging", level="WARNING")
        .replace("polling", workers=args.workers)
    )
    database = Database(config.database)
    sub: subprocess.Popen[bytes] | None = None
    seen: set[str] = set()
    try:
        migrate.upgrade(database)
        raw_scenario = build_scenario(args.devices, args.per_account, span_h)
        scenario = parse_scenario(raw_scenario)
        prerendered = None
        if args.cloud == "prerendered":
            prerendered = prerender(args, scenario, raw_scenario, speed)
        sim = CloudSimulator(scenario, speed=speed, seed=1).start()
        config = config.replace("thermoworks", **sim.urls())
        sim.clock.set(START_H * 3600 - 60)
        alerts = prepare(database, config, sim, args.per_account)
        print(
            f"{args.devices} devices ({PROBES} probes each) in {len(scenario.accounts)} accounts, "
            f"{alerts} alerts; simulated time x{speed:g} (offers ~"
            f"{args.devices * PROBES / PUSH_S * speed:,.0f} readings/s); "
            f"{database.dialect}, broker {args.mqtt}",
            flush=True,
        )
        raw: dict[str, float] = {}
        if args.raw_seconds > 0:
            raw = raw_limits.measure(mqtt.host, mqtt.port, url, args.raw_seconds)
            print(
                "raw limits: "
                + ", ".join(f"{k} {v:,.0f}" for k, v in raw.items())
                + f" ({args.raw_seconds:g} s each)",
                flush=True,
            )
        sub_out = tmp / "received.txt"
        sub = start_subscriber(mqtt, sub_out)
        try:
            sim.clock.set(START_H * 3600)
            spec = {
                "config": _config_dict(config),
                "clock": {
                    "start": scenario.start.isoformat(),
                    "speed": speed,
                    "offset": sim.clock.offset(),
                    "monotonic": time.monotonic(),
                },
                "warmup": args.warmup,
                "seconds": args.seconds,
                "rss_every": args.rss_every,
                "profile": args.profile,
                "sections": [n for n in args.sections.split(",") if n],
                "prerendered": prerendered,
                "emulate_leases": args.emulate_leases,
            }
            children = []
            cpu0 = time.process_time()
            started = time.monotonic()
            for index in range(args.processes):
                (tmp / f"spec{index}.json").write_text(
                    json.dumps(
                        {
                            **spec,
                            "identity": [index, args.processes],
                            "out": str(tmp / f"child{index}.json"),
                        }
                    )
                )
                children.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            str(Path(__file__).with_name("pipeline_child.py")),
                            str(tmp / f"spec{index}.json"),
                        ],
                        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
                    )
                )
            codes = [child.wait() for child in children]
            sim_cpu = (time.process_time() - cpu0) / (time.monotonic() - started)
            if any(codes):
                raise SystemExit(f"bridge process(es) failed: exit codes {codes}")
        finally:
            sim.stop()
        time.sleep(0.5)  # the last states reach the subscriber
        sub.terminate()
        sub.wait(5)
        result = merge(
            [json.loads((tmp / f"child{i}.json").read_text()) for i in range(args.processes)]
        )
        received = received_times(sub_out)
        seen = {topic for topic, payload in received if payload}
        report(args, result, received, sim_cpu, speed, raw)
    finally:
        if sub is not None and sub.poll() is None:
            sub.kill()
        try:
            cleared = cleanup_broker(mqtt, database, seen)
            print(f"cleanup: {cleared} retained topics cleared", flush=True)
        finally:
            database.dispose()
            if pg_name is not None:
                drop_database(args.database_url, pg_name)
            if not os.environ.get("BENCH_KEEP"):
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                print(f"kept {tmp}")


def prerender(
    args: argparse.Namespace, scenario: Any, raw_scenario: dict[str, Any], speed: float
) -> dict[str, Any]:
    """Render every Firestore query answer of the run (cached in the temp directory)."""
    emails = tuple(a.email for a in scenario.accounts)
    slots = int((args.warmup + args.seconds + 15) * speed / PUSH_S) + 2
    layout = Layout(emails=emails, start=START_H * 3600, slot=PUSH_S, slots=slots)
    digest = hashlib.sha256(json.dumps(raw_scenario, sort_keys=True).encode()).hexdigest()
    cache = Path(tempfile.gettempdir()) / "grillstats-bench-answers"
    started = time.monotonic()
    base = render(scenario, layout, cache, processes=args.render_processes, digest=digest)
    size = base.with_suffix(".bin").stat().st_size
    print(
        f"cloud answers: {len(emails)} accounts x {slots} slots of {PUSH_S:g} s prerendered "
        f"({size / 1e6:,.0f} MB in {cache}, {time.monotonic() - started:.1f} s)",
        flush=True,
    )
    return {
        "base": str(base),
        "layout": dataclasses.asdict(layout),
        "account_ids": account_ids(scenario, emails),
        "serials": serial_accounts(scenario),
    }


def _config_dict(config: Config) -> dict[str, Any]:
    return {
        f.name: dataclasses.asdict(getattr(config, f.name))
        for f in dataclasses.fields(config)
        if f.name != "source"
    }


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The processes' figures as one bridge's: rates and CPU added up, memory per process."""
    if len(results) == 1:
        only = results[0]
        return {
            **only,
            "vmhwm_kb_per_process": [only["vmhwm_kb"]],
            "states_dropped": [only["states_dropped"]],
            "resent": [only["resent"]],
            "several_polled": 0,
        }
    windows = [r["window"] for r in results]
    secs = statistics.mean(w["seconds"] for w in windows)

    def rate(key: str) -> float:  # each process's per-second figure, added up, over ``secs``
        return float(sum(w[key] / w["seconds"] for w in windows) * secs)

    polled = [{p["account"] for p in r["polls"]} for r in results]
    counts: dict[int, int] = {}
    for accounts in polled:
        for account in accounts:
            counts[account] = counts.get(account, 0) + 1
    threads: dict[str, float] = {}
    for w in windows:
        for k, v in w["cpu_by_thread"].items():
            threads[k] = threads.get(k, 0.0) + v * secs / w["seconds"]
    transactions = sum(w["transactions"] for w in windows)
    polls = [p for r in results for p in r["polls"]]
    sections: dict[str, list[float]] = {}
    for w in windows:  # added up over the processes, each scaled to ``secs``
        for k, (cpu, calls) in w.get("sections", {}).items():
            total = sections.setdefault(k, [0.0, 0.0])
            total[0] += cpu * secs / w["seconds"]
            total[1] += calls * secs / w["seconds"]
    return {
        "polls": polls,
        "window": {
            "seconds": secs,
            "processed_readings": rate("processed_readings"),
            "offered_readings": rate("offered_readings"),
            "transactions": transactions,
            "polls_per_transaction": len(polls) / max(transactions, 1),
            "cpu_seconds": rate("cpu_seconds"),
            "cpu_by_thread": threads,
            "queued_at_end": sum(w["queued_at_end"] for w in windows),
            "sections": sections,
        },
        "vmhwm_kb": max(r["vmhwm_kb"] for r in results),
        "vmhwm_kb_per_process": [r["vmhwm_kb"] for r in results],
        "rss_anon_kb": max(r["rss_anon_kb"] for r in results),
        "rss_file_kb": max(r["rss_file_kb"] for r in results),
        "rss": results[0]["rss"],
        "rss_stages_kb": results[0]["rss_stages_kb"],  # process 0's (they start alike)
        "errors": sum(r["errors"] for r in results),
        "states_dropped": [r["states_dropped"] for r in results],
        "resent": [r["resent"] for r in results],
        "several_polled": sum(1 for n in counts.values() if n > 1),
        "accounts_polled": len(counts),
    }


def arrivals(
    polls: list[dict[str, Any]], received: dict[tuple[str, str], list[float]]
) -> tuple[list[float], int]:
    """Each poll's time from its answer to the last of its states that reached the broker,
    and how many polls had none arrive (each superseded in the outbox by the next poll's
    value of its topic).

    A state arrives with the first reception of its (topic, payload) after the poll's
    answer and before the same (topic, payload) was handed again by a later poll: without
    that bound a superseded state matched the next identical payload, seconds or minutes
    later (a probe's state that comes back to the same figures), and made a false max."""
    handings: dict[tuple[str, str], list[float]] = {}
    for p in polls:
        for state in p["published"]:
            handings.setdefault((state[0], state[1]), []).append(p["handed"])
    for times in handings.values():
        times.sort()
    arrived: list[float] = []
    missing = 0
    for p in polls:
        last = None
        for topic, payload in p["published"]:
            key = (topic, payload)
            until = next((h for h in handings[key] if h > p["handed"]), math.inf)
            times = [t for t in received.get(key, ()) if p["available"] <= t < until]
            if times:
                last = max(last or 0.0, times[0])
        if p["published"] and last is None:
            missing += 1  # every state superseded in the outbox by the next poll's value
        elif last is not None:
            arrived.append(last - p["available"])
    return arrived, missing


# --sections without names: where a poll's CPU goes, in the poll workers, then the pipeline
SECTIONS = (
    "grillstats_bridge.thermoworks.client:ThermoworksClient._call",  # HTTP and JSON
    "grillstats_bridge.thermoworks.client:ThermoworksClient.poll",  # ... and the decoding
    "bridge.leases.confirm",
    "bridge.publisher.publish_devices",  # the poll's states
    "bridge.pipeline.process",  # the transaction: the next five and the rest
    "grillstats_bridge.store.devices:DeviceSync.sync_many",
    "grillstats_bridge.bridge.pipeline.write_readings",
    "grillstats_bridge.sessions.service:SessionService.process_polls",
    "grillstats_bridge.alerts.service:AlertService.process",
    "grillstats_bridge.cook.service:CookService.process",
    "bridge._after_commit",  # what the transaction produced, published
    "grillstats_bridge.ha.publisher:Publisher.publish_cook",
)


def report(
    args: argparse.Namespace,
    result: dict[str, Any],
    received: dict[tuple[str, str], list[float]],
    sim_cpu: float,
    speed: float,
    raw: dict[str, float],
) -> None:
    polls = result["polls"]
    window = result["window"]
    handed = [p["handed"] - p["available"] for p in polls]
    arrived, missing = arrivals(polls, received)
    secs = window["seconds"]
    readings = window["processed_readings"]
    cpu = window["cpu_seconds"]
    ms = 1000.0
    lines = [
        f"bridge, {secs:.0f} s measured after {args.warmup:.0f} s warm-up:",
        f"  readings/s    {readings / secs:10,.0f} processed "
        f"({window['offered_readings'] / secs:,.0f} offered by {len(polls)} polls; "
        f"{window['queued_at_end']} polls queued at the end)",
        f"  poll->handed  median {statistics.median(handed) * ms:6.1f} ms   p99 "
        f"{percentile(handed, 0.99) * ms:6.1f} ms   max {max(handed) * ms:6.1f} ms"
        if handed
        else "  poll->handed  no polls",
        f"  poll->broker  median {statistics.median(arrived) * ms:6.1f} ms   p99 "
        f"{percentile(arrived, 0.99) * ms:6.1f} ms   max {max(arrived) * ms:6.1f} ms"
        f"   ({len(arrived)} polls; {missing} superseded)"
        if arrived
        else "  poll->broker  nothing matched",
        f"  CPU           {cpu / secs * 100:5.0f} % of a core, "
        f"{cpu / max(readings, 1) * 1e6:.0f} us/reading "
        f"({', '.join(f'{k} {v / secs * 100:.0f}%' for k, v in window['cpu_by_thread'].items())})"
        f"; simulator {sim_cpu * 100:.0f} %",
        f"  memory        peak RSS (VmHWM) {result['vmhwm_kb'] / 1024:.1f} MB (then: "
        f"{result['rss_anon_kb'] / 1024:.1f} MB own, {result['rss_file_kb'] / 1024:.1f} MB of "
        "shared libraries); RSS "
        + ", ".join(f"{k} {kb / 1024:.1f}" for k, kb in result["rss_stages_kb"].items())
        + "; over time "
        + " ".join(f"{t:.0f}s:{kb / 1024:.1f}" for t, kb in result["rss"]),
        *(
            [
                f"  processes     {args.processes}: peak RSS "
                + ", ".join(f"{kb / 1024:.1f}" for kb in result["vmhwm_kb_per_process"])
                + " MB; "
                + (
                    f"{result['several_polled']} of {result['accounts_polled']} accounts polled "
                    "by more than one process (their readings count once per process)"
                    if result["several_polled"]
                    else f"each of {result['accounts_polled']} accounts polled by one process"
                )
            ]
            if args.processes > 1
            else []
        ),
        f"  pipeline      {window['transactions']} transactions, "
        f"{window['polls_per_transaction']:.1f} polls each; errors {result['errors']}",
        "  MQTT outbox   dropped (full, over the whole run) "
        + ", ".join(str(n) for n in result["states_dropped"])
        + "; sent again after a drop "
        + ", ".join(str(n) for n in result["resent"])
        + (" (per process)" if args.processes > 1 else ""),
    ]
    for name, (section_cpu, calls) in window.get("sections", {}).items():
        lines.append(
            f"  section       {section_cpu / max(readings, 1) * 1e6:5.0f} us/reading "
            f"{section_cpu / max(calls, 1) * 1e6:7.0f} us/call {calls:7.0f} calls  {name}"
        )
    states = sum(len(p["published"]) for p in polls)
    bridge = {"readings_per_s": readings / secs, "states_per_s": states / secs}
    ratios = {
        f"{mine}/{limit}": bridge[mine] / raw[limit]
        for mine, limit in (
            ("readings_per_s", "pg_insert_rows_per_s"),
            ("readings_per_s", "paho_qos0_msgs_per_s"),
            ("states_per_s", "paho_qos0_msgs_per_s"),
            ("states_per_s", "paho_qos1_msgs_per_s"),
        )
        if raw.get(limit)
    }
    if ratios:
        lines.append(
            f"  raw limits    {', '.join(f'{k} {v:,.0f}' for k, v in raw.items())}; "
            f"states published {states / secs:,.0f}/s"
        )
        lines.append("  ratios        " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    print("\n".join(lines), flush=True)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "devices": args.devices,
                    "speed": speed,
                    "seconds": secs,
                    "readings_per_s": readings / secs,
                    "offered_per_s": window["offered_readings"] / secs,
                    "handed_ms": {
                        "p50": statistics.median(handed) * ms if handed else None,
                        "p99": percentile(handed, 0.99) * ms,
                    },
                    "received_ms": {
                        "p50": statistics.median(arrived) * ms if arrived else None,
                        "p99": percentile(arrived, 0.99) * ms,
                    },
                    "cpu_us_per_reading": cpu / max(readings, 1) * 1e6,
                    "vmhwm_mb": result["vmhwm_kb"] / 1024,
                    "vmhwm_mb_per_process": [kb / 1024 for kb in result["vmhwm_kb_per_process"]],
                    "processes": args.processes,
                    "accounts_polled_by_several": result["several_polled"],
                    "states_dropped": result["states_dropped"],
                    "resent": result["resent"],
                    "states_per_s": states / secs,
                    "raw_limits": raw,
                    "ratios": ratios,
                    "rss_anon_mb": result["rss_anon_kb"] / 1024,
                    "rss_file_mb": result["rss_file_kb"] / 1024,
                    "rss_mb": [(t, kb / 1024) for t, kb in result["rss"]],
                    "rss_stages_mb": {k: kb / 1024 for k, kb in result["rss_stages_kb"].items()},
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
