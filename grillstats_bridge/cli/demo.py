"""``grillstats-bridge demo``: the whole bridge against the built-in simulator, nothing to set up.

It starts the simulator (a sped-up brisket cook by default), keeps a SQLite
database and its key in a demo folder, creates a demo user linked to the
simulated ThermoWorks account, adds two alerts, connects to the broker on
localhost:1883 — or, when none answers there and Mosquitto is installed, starts
a private one on a free port — runs the daemon and draws a live view until Ctrl-C.

It never touches a real installation: its own database and key in the demo folder,
its own instance id (``demo-`` and a hash of the folder, so two demo folders do not
fight either) and base topic (``grillstats-demo``), and when it stops it clears every
retained message it published, so Home Assistant forgets the demo devices.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from grillstats_bridge.accounts.service import link_account
from grillstats_bridge.alerts.rules import add_alert
from grillstats_bridge.bridge.poller import poll_and_sync
from grillstats_bridge.cli.liveview import CLEAR, ViewState, render
from grillstats_bridge.cli.logsetup import log_to
from grillstats_bridge.config import Config, load_config
from grillstats_bridge.domain import utcnow
from grillstats_bridge.errors import GrillstatsError
from grillstats_bridge.simulator.server import CloudSimulator
from grillstats_bridge.store import migrate, users
from grillstats_bridge.store.accounts import account_info
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.publications import PublicationStore

log = logging.getLogger(__name__)

DEMO_USER = "demo@grillstats.local"
DEMO_BASE_TOPIC = "grillstats-demo"
VIEW_EVERY_S = 0.5


def run_demo(
    *,
    scenario: str = "brisket",
    speed: float = 120.0,
    data_dir: str = "grillstats-demo",
    view: bool = True,
    config_path: str | None = None,
) -> int:
    from grillstats_bridge.bridge.daemon import Bridge

    # The usual search (so GRILLSTATS_MQTT_HOST and a config.yaml's broker apply); the
    # database, key, cloud and health port are the demo's own whatever it says.
    base = load_config(config_path)
    folder = Path(data_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if view:
        # The live view owns the terminal: the log goes to a file beside the database.
        log_to(logging.FileHandler(folder / "demo.log", encoding="utf-8"))
    # The cook starts now, so that "last seen" and session times read naturally in HA.
    simulator = CloudSimulator(scenario, speed=speed, start=utcnow())
    with simulator as sim, _broker(base) as (host, port, note):
        config = (
            base.replace("database", url=f"sqlite:///{folder / 'demo.db'}")
            .replace("security", key_file=str(folder / "demo.key"))
            .replace(
                "mqtt",
                host=host,
                port=port,
                instance_id=demo_instance_id(folder),
                base_topic=DEMO_BASE_TOPIC,
                client_id="",
            )
            .replace("http", port=0, web=True, admins=DEMO_USER)
            .replace("thermoworks", **sim.urls())
        )
        database = Database(config.database)
        migrate.upgrade(database)
        password = _prepare(database, config, sim)
        bridge = Bridge(config, database=database, clock=sim.clock)
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()
            bridge.request_stop()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        bridge.start()
        runner = threading.Thread(target=bridge.run, name="bridge", daemon=True)
        runner.start()
        print(f"demo: simulator '{scenario}' at {speed:g}x on {sim.base_url}; {note}")
        if bridge.health_server is not None:
            print(f"demo: health at {bridge.health_server.url}; data and log in {folder}")
            web = bridge.health_server.url.removesuffix("health")
            print(f"demo: web app at {web} (log in as {DEMO_USER}, password {password})")
        try:
            while not stop.is_set() and runner.is_alive():
                if view:
                    sys.stdout.write(CLEAR + render(_view_state(bridge, note), width=_width()))
                    sys.stdout.flush()
                stop.wait(VIEW_EVERY_S)
        finally:
            bridge.request_stop()
            runner.join(15)
            _clear_retained(config, database, broker=note)
            database.dispose()
        print("demo stopped cleanly")
    return 0


def demo_instance_id(folder: Path) -> str:
    """The demo's own instance id: one per demo folder, never a real installation's."""
    return f"demo-{hashlib.sha256(str(folder).encode()).hexdigest()[:8]}"


def _clear_retained(config: Config, database: Database, *, broker: str) -> None:
    """What the demo retained goes away with it (as ``mqtt cleanup`` would do it)."""
    from grillstats_bridge.cli.mqtt_cmd import clear_instance

    if broker.startswith("no broker"):
        return
    try:
        cleared = clear_instance(config.mqtt, PublicationStore(database, config.mqtt.instance_id))
    except GrillstatsError as exc:
        print(f"demo: retained messages not cleared ({exc}); 'mqtt cleanup' clears them")
        return
    print(f"demo: cleared the {cleared} retained messages it published")


def _prepare(database: Database, config: Config, sim: CloudSimulator) -> str:
    """The demo user, linked to the scenario's first account, with two alerts; returns the
    user's password for the web app, new on every run (the demo's data is throwaway)."""
    account = sim.scenario.accounts[0]
    password = secrets.token_urlsafe(9)
    with database.transaction() as db:
        if users.find_user(db, DEMO_USER) is None:
            users.add_user(db, DEMO_USER, password, config.security, name="Demo Pitmaster")
        else:
            users.set_password(db, DEMO_USER, password, config.security)
            users.unlock(db, DEMO_USER)
    if account_info(database, DEMO_USER) is None:
        link_account(
            database,
            config,
            DEMO_USER,
            account.password,
            provider=account.provider,
            tw_email=account.email,
            store_password=True,
            clock=sim.clock.now,
        )
    poll_and_sync(database, config, [DEMO_USER])  # the devices must exist to carry alerts
    devices = [d for d in sim.scenario.devices if d.account.lower() == account.email.lower()]
    probes = [(d.serial, c.number) for d in devices for c in d.channels if c.unit.is_temperature]
    with database.transaction() as db:
        from grillstats_bridge.alerts.rules import list_alerts

        if probes and not list_alerts(db, DEMO_USER):
            pit_serial, pit = probes[0]
            add_alert(
                db,
                DEMO_USER,
                serial=pit_serial,
                probe=pit,
                kind="range",
                low=200,
                high=300,
                name="Pit out of range",
            )
            if len(probes) > 1:
                meat_serial, meat = probes[1]
                add_alert(
                    db,
                    DEMO_USER,
                    serial=meat_serial,
                    probe=meat,
                    kind="target",
                    target=165,
                    name="Meat at 165",
                )
    return password


def _view_state(bridge: object, note: str) -> ViewState:
    from grillstats_bridge.bridge.daemon import Bridge

    assert isinstance(bridge, Bridge)
    devices = [d for info in bridge.accounts.values() for d in info.devices]
    now = bridge.clock.now()
    sessions = {
        s.serial: f"{s.status} '{s.name}', {_hours(s.duration(now).total_seconds())}"
        + (f", avg {s.average:.0f} {s.unit.symbol}" if s.average is not None and s.unit else "")
        for s in bridge.sessions.tracker.active_sessions()
    }
    mqtt = "connected" if bridge.mqtt.connected else "not connected"
    db = "ok" if bridge.pipeline.database_ok else f"DOWN ({len(bridge.buffer)} buffered)"
    status = (
        f"broker {mqtt} ({note}); database {db}; polls {bridge.stats.polls}, "
        f"readings {bridge.stats.readings}"
    )
    return ViewState(
        now=now,
        status=status,
        devices=devices,
        sessions=sessions,
        alerts=list(bridge.stats.recent_firings),
    )


def _hours(seconds: float) -> str:
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _width() -> int:
    return shutil.get_terminal_size((100, 40)).columns


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@contextmanager
def _broker(config: Config) -> Iterator[tuple[str, int, str]]:
    """The configured broker if it answers; else a private Mosquitto if installed; else none."""
    host, port = config.mqtt.host, config.mqtt.port
    if _answers(host, port):
        yield host, port, f"MQTT broker {host}:{port}"
        return
    binary = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)),
        None,
    )
    if binary is None:
        print(
            f"demo: no MQTT broker answers on {host}:{port} and Mosquitto is not installed; "
            "running without publishing (install one: sudo apt install mosquitto)"
        )
        yield host, port, "no broker: nothing is published"
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="grillstats-demo-mqtt-") as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(f"listener {free} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 5
            while not _answers("127.0.0.1", free) and time.monotonic() < deadline:
                time.sleep(0.05)
            yield (
                "127.0.0.1",
                free,
                f"private Mosquitto on 127.0.0.1:{free} (none on {host}:{port})",
            )
        finally:
            proc.terminate()
            proc.wait(5)
