"""What a real Home Assistant makes of the bridge, run by hand (needs ../shared/tools/ha-check).

    PYTHONPATH=. .venv/bin/python benchmarks/ha_check.py [--json report.json]
    (with HA 2026.2.3 installed by the tool: HA_IGNORE_PY_CHECK=1 in the environment)

Holds /tmp/ha-check.lock for its whole run (the tool is shared), starts a Mosquitto
of its own on a free port (so it may restart it) and a fresh Home Assistant on it,
runs the bridge's real MQTT client and publisher with the test devices
(tests/sample_devices.py), and checks, in four phases:

1. first start: every device and entity appears, with the values the bridge
   published (``unknown`` exactly where it published null, ``unavailable`` exactly
   for the offline device's device-bound entities), and HA logged no MQTT error or
   warning;
2. live values: new readings reach HA's states;
3. HA restart (same configuration): HA's birth makes the bridge republish, every
   entity is back with its value;
4. broker restart (no persistence: every retained message lost): the bridge
   reconnects, republishes, and HA shows everything again;
5. alerts: targets and alert-active states show on the numbers and binary
   sensors, a probe's cook estimate on its done-at (timestamp), time-to-target
   (duration), progress, stalled and cook-state entities, every device trigger
   (the alerts' and the cook's) is listed, and two firings published the way the
   daemon does fire exactly their two device triggers (``run_ha_check.sh watch``)
   and are recorded, with their attributes, by the device's *Alerts* event entity;
6. cooking sessions, with the real daemon (the simulator's hot-and-fast cook, a
   SQLite database): an automatic session shows in HA's session entities, HA's
   "End session" button ends it, "Start session" starts a manual one and "End
   session" ends that; the "Session" event entity records each start and end
   with the session's summary as attributes; then HA's number.set_value on the
   kettle's *Pit target* creates, changes and removes its target alert in the
   database, and the number shows each value back; and its *Pit range low* /
   *Pit range high*: a low alone waits, the high creates the range alert, a side
   changes it, a low above the high is refused, a disable / enable made elsewhere
   shows, and 0 removes it.

The alert entities (rows of ``ha.entities.TABLE``) are published from phase 1 on.

Then it stops HA, the bridge and the broker. Exit status 0 when every check held.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from grillstats_bridge import __version__
from grillstats_bridge.alerts.engine import AlertKind, Firing
from grillstats_bridge.alerts.entities import alert_views, publish_firing
from grillstats_bridge.config import MqttConfig, ThermoworksConfig
from grillstats_bridge.domain import Device, FiringEvent, Measurement, Unit, utcnow
from grillstats_bridge.ha.cook_entities import COOK_EVENT_TYPES, ProbeCook
from grillstats_bridge.ha.entities import (
    EVENT_TYPES,
    TABLE,
    AccountStatus,
    BridgeHealth,
    BridgeStatus,
    DeviceView,
    ProbeAlerts,
)
from grillstats_bridge.ha.ids import sanitize
from grillstats_bridge.ha.payloads import bridge_publication, device_publication
from grillstats_bridge.ha.publisher import Publisher, naming_for
from grillstats_bridge.mqtt.client import MqttClient
from tests.fixtures.mqtt import free_port, port_open
from tests.sample_devices import CELSIUS, SIGNALS, sample_devices

TOOL = Path(os.environ.get("HA_CHECK", "/work/shared/tools/ha-check/run_ha_check.sh"))
LOCK = "/tmp/ha-check.lock"
INSTANCE = "hacheck"
CONNECTION_LOST = "Error returned from MQTT server: The connection was lost"
ALERT_TABLE = TABLE
Alerts = dict[str, tuple[ProbeAlerts, ...]]
Cook = dict[str, tuple[ProbeCook, ...]]


class Check:
    """Collects pass/fail lines; the report and the exit status come from it."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.report: dict[str, Any] = {}

    def ok(self, condition: bool, what: str) -> None:
        print(("  ok    " if condition else "  FAIL  ") + what, flush=True)
        if not condition:
            self.failures.append(what)


@contextlib.contextmanager
def shared_lock() -> Iterator[None]:
    with open(LOCK, "w") as handle:
        print(f"waiting for {LOCK} ...", flush=True)
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Broker:
    """A Mosquitto of our own (no persistence), restartable."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        self.log = workdir / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                ["/usr/sbin/mosquitto", "-c", str(self.conf)], stdout=out, stderr=out
            )
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port):
            assert time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def tool(*args: str, env: dict[str, str], check: bool = True) -> str:
    result = subprocess.run(
        [str(TOOL), *args], env=env, capture_output=True, text=True, timeout=300
    )
    if check and result.returncode not in (0, 2):
        sys.stderr.write(result.stderr)
        raise RuntimeError(f"{TOOL.name} {' '.join(args)}: exit {result.returncode}")
    return result.stdout


def snapshot(env: dict[str, str], wait_ids: list[str]) -> dict[str, Any]:
    args = ["states", "--timeout", "60", "--wait-state-any"]
    for uid in wait_ids:
        args += ["--wait-unique-id", uid]
    data: dict[str, Any] = json.loads(tool(*args, env=env))
    return data


def expected_states(
    naming: Any,
    bridge: BridgeStatus,
    devices: Any,
    alerts: Alerts | None = None,
    cook: Cook | None = None,
) -> dict[str, Any]:
    """unique id -> what HA should show, from the very payloads the bridge publishes.

    An event entity shows ``unknown`` until its first event (``None`` here).
    """
    now = utcnow()
    alerts = alerts or {}
    cook = cook or {}
    pubs = [bridge_publication(naming, bridge, ALERT_TABLE)] + [
        device_publication(
            naming,
            DeviceView.of(d, now, alerts=alerts.get(d.serial, ()), cook=cook.get(d.serial, ())),
            ALERT_TABLE,
        )
        for d in devices
    ]
    states = {s.topic: s.payload for p in pubs for s in p.states}
    out: dict[str, Any] = {}
    for pub in pubs:
        for config in pub.configs:
            if config.unique_id is None:
                continue  # a device trigger: no entity
            p = config.payload
            if "value_template" in p:
                key = p["value_template"].split("value_json.")[1].split()[0]
                value = json.loads(states[p["state_topic"]])[key]
            else:
                value = None  # a button never pressed, an event never fired: "unknown"
            avail = all(
                states.get(a["topic"], "online") == "online" for a in p["availability"]
            )  # the bridge's own status topic is not in `states`: it is online
            out[str(config.unique_id)] = {"value": value, "available": avail, "payload": p}
    return out


def compare(
    check: Check,
    ha: dict[str, Any],
    want: dict[str, Any],
    phase: str,
    *,
    allow_connection_loss: bool = False,
) -> None:
    mine = {e["unique_id"]: e for e in ha["entities"] if e["unique_id"].startswith(INSTANCE)}
    check.ok(set(mine) == set(want), f"{phase}: {len(mine)} entities, {len(want)} expected")
    wrong = []
    for uid, w in want.items():
        entity = mine.get(uid)
        if entity is None:
            continue
        state = entity["state"]
        if not w["available"]:
            good = state == "unavailable"
        elif "event_types" in w["payload"] and w["value"] is not None:
            good = state not in ("unknown", "unavailable")  # the time of the last event
        elif w["value"] is None:
            good = state == "unknown"
        elif isinstance(w["value"], bool):
            good = state == ("on" if w["value"] else "off")
        elif w["payload"].get("device_class") == "timestamp":
            good = state not in ("unknown", "unavailable")
        elif isinstance(w["value"], (int, float)) and not isinstance(w["value"], bool):
            unit = w["payload"].get("unit_of_measurement")
            shown = float(state) if state not in ("unknown", "unavailable") else None
            expect = float(w["value"]) if unit != "°C" else w["value"] * 9 / 5 + 32  # US units
            good = shown is not None and abs(shown - expect) < 0.06
        else:
            good = state == str(w["value"])
        if not good:
            wrong.append(f"{uid}: HA {state!r}, published {w['value']!r}")
    check.ok(not wrong, f"{phase}: every state as published" + (f" ({wrong[:5]})" if wrong else ""))
    devices = [
        d for d in ha["devices"] if any(INSTANCE in str(i) for i in d.get("identifiers", []))
    ]
    wanted = {json.dumps(w["payload"]["device"]["identifiers"]) for w in want.values()}
    check.ok(
        len(devices) == len(wanted), f"{phase}: {len(devices)} devices, {len(wanted)} expected"
    )
    # Restarting the broker makes HA's own MQTT client warn that it lost its connection;
    # that says nothing about our payloads, and is reported apart (only in that phase).
    lost = [line for line in ha["mqtt_log"] if CONNECTION_LOST in line]
    log = [line for line in ha["mqtt_log"] if line not in lost or not allow_connection_loss]
    check.ok(
        not log,
        f"{phase}: HA logged {len(log)} MQTT errors or warnings"
        + "".join(f"\n        {line[:300]}" for line in log[:10]),
    )
    if lost and allow_connection_loss:
        print(f"  note  HA's own client logged the broker going away: {lost[0][:160]}")
    check.report[phase] = {
        "entities": len(mine),
        "devices": len(devices),
        "states": {uid: e["state"] for uid, e in sorted(mine.items())},
        "mqtt_log": ha["mqtt_log"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the report (states per phase) here")
    parser.add_argument(
        "--fleet", type=int, default=0, help="also publish this many more 4-probe Signals"
    )
    args = parser.parse_args()
    check = Check()
    with shared_lock(), tempfile.TemporaryDirectory(prefix="ha-check-") as tmp:
        broker = Broker(Path(tmp))
        env = dict(os.environ, MQTT_PORT=str(broker.port))
        client: MqttClient | None = None
        try:
            broker.start()
            print(f"broker on 127.0.0.1:{broker.port}; starting Home Assistant", flush=True)
            tool("start", env=env)
            config = MqttConfig(
                host="127.0.0.1",
                port=broker.port,
                instance_id=INSTANCE,
                reconnect_min_delay=0.2,
                reconnect_max_delay=2.0,
                ha_birth_delay=2.0,
            )
            naming = naming_for(config)
            client = MqttClient(config, status_topic=naming.status_topic)
            publisher = Publisher(client, config, table=ALERT_TABLE)
            client.start()
            assert client.wait_ready(10)
            bridge = BridgeStatus(
                status=BridgeHealth.OK,
                last_poll=utcnow(),
                cloud_errors=2,
                accounts=(
                    AccountStatus(user_id=1, label="alice@example.com"),
                    AccountStatus(user_id=2, label="bob", reauth_needed=True),
                ),
            )
            devices = with_fleet(sample_devices(utcnow()), args.fleet)
            publisher.publish_bridge_state(bridge)
            publisher.publish_devices(1, devices)
            want = expected_states(naming, bridge, devices)
            ids = sorted(want)

            print("phase 1: first start", flush=True)
            ha = wait_for(env, ids, want, timeout=60)
            check.report["ha_version"] = ha["ha_version"]
            print(f"  Home Assistant {ha['ha_version']}", flush=True)
            compare(check, ha, want, "first start")

            print("phase 2: live values", flush=True)
            devices = with_fleet(sample_devices(utcnow(), step=4), args.fleet)  # +2 degrees
            publisher.publish_devices(1, devices)
            want = expected_states(naming, bridge, devices)
            ha = wait_for(env, ids, want, timeout=60)  # every probe +2 degrees, or time is up
            compare(check, ha, want, "live values")

            print("phase 3: Home Assistant restart", flush=True)
            births = publisher.health().ha_births
            tool("stop", env=env)
            tool("start", env=dict(env, HA_FRESH="0"))
            ha = wait_for(env, ids, want, timeout=60)
            deadline = time.monotonic() + 30
            while publisher.health().ha_births <= births and time.monotonic() < deadline:
                time.sleep(0.2)
            check.ok(publisher.health().ha_births > births, "HA restart: the bridge saw HA's birth")
            compare(check, ha, want, "HA restart")

            print("phase 4: broker restart (no persistence)", flush=True)
            connects = client.health().connects
            broker.stop()
            broker.start()
            ha = wait_for(env, ids, want, timeout=90)
            check.ok(client.health().connects > connects, "broker restart: the bridge reconnected")
            compare(check, ha, want, "broker restart", allow_connection_loss=True)

            print("phase 5: alerts", flush=True)
            alerts_phase(check, env, publisher, naming, bridge, devices)

            print("phase 6: cooking sessions (the daemon, the simulator, SQLite)", flush=True)
            sessions_phase(check, env, broker.port, Path(tmp))
        finally:
            if client is not None:
                client.stop()
            tool("stop", env=env, check=False)
            broker.stop()
    check.report["bridge_version"] = __version__
    check.report["failures"] = check.failures
    if args.json:
        Path(args.json).write_text(json.dumps(check.report, indent=1, ensure_ascii=False))
    print("ALL CHECKS HELD" if not check.failures else f"{len(check.failures)} CHECKS FAILED")
    return 0 if not check.failures else 1


def alerts_phase(
    check: Check,
    env: dict[str, str],
    publisher: Publisher,
    naming: Any,
    bridge: BridgeStatus,
    devices: tuple[Device, ...],
) -> None:
    """Targets, alert-active, device triggers and the Alerts event entity in HA."""
    alerts = alert_views(
        {
            (SIGNALS, 1): Measurement(203, Unit.FAHRENHEIT),
            (CELSIUS, 1): Measurement(145, Unit.FAHRENHEIT),  # an °F target on a °C probe
        },
        {(SIGNALS, 1), (SIGNALS, 2)},
    )
    publisher.publish_alerts(alerts)
    now = utcnow().replace(microsecond=0)
    cook = {  # a stalled brisket: every cook entity with a value (the °C probe's: unknown)
        SIGNALS: (
            ProbeCook(
                channel=1,
                state="stalled",
                done_at=now + dt.timedelta(hours=3),
                low=now + dt.timedelta(hours=2),
                high=now + dt.timedelta(hours=5),
                minutes_left=180.0,
                minutes_low=120.0,
                minutes_high=300.0,
                progress=72.5,
                stalled=True,
                method="stall",
                stall_started=now - dt.timedelta(minutes=50),
            ),
        )
    }
    publisher.publish_cook(cook)
    want = expected_states(naming, bridge, devices, alerts, cook)
    ha = wait_for(env, sorted(want), want, timeout=60)
    # HA's log still holds phase 4's lost connection (its own client, not our payloads).
    compare(check, ha, want, "alerts: targets and alert active", allow_connection_loss=True)
    sid = naming.device_root(SIGNALS).rsplit("/", 1)[1]
    shown = {e["unique_id"]: e["state"] for e in ha["entities"]}
    check.ok(
        shown.get(f"{INSTANCE}_{sid}_p1_target") in ("203", "203.0")
        and shown.get(f"{INSTANCE}_{sid}_p1_alert_active") == "on"
        and shown.get(f"{INSTANCE}_{sid}_p3_alert_active") == "off",
        "alerts: Brisket target 203 and alert active on, probe 3 off",
    )

    ours = {d["id"]: d for d in ha["devices"] if INSTANCE in json.dumps(d["identifiers"])}
    listed = [t for dev in ours for t in ha["device_triggers"].get(dev, [])]
    temperature_probes = sum(1 for d in devices for p in d.probes if p.unit.is_temperature)
    targets = sum(1 for probes in alerts.values() for a in probes if a.target is not None)
    check.ok(
        len(listed) == len(EVENT_TYPES) * temperature_probes + len(COOK_EVENT_TYPES) * targets,
        f"alerts: HA lists {len(listed)} device triggers, "
        f"{len(EVENT_TYPES)} x {temperature_probes} temperature probes "
        f"+ {len(COOK_EVENT_TYPES)} x {targets} targets expected",
    )
    signals_id = next(i for i, d in ours.items() if d.get("serial_number") == SIGNALS)

    # Watch (it subscribes to every device trigger), then fire two alerts as the daemon does.
    watch = subprocess.Popen(
        [str(TOOL), "watch", "--seconds", "25"], env=env, stdout=subprocess.PIPE, text=True
    )
    assert watch.stdout is not None
    header = json.loads(watch.stdout.readline())
    for channel in (1, 2):
        tool("wait-subscribed", naming.probe_event_topic(SIGNALS, channel), "20", env=env)
    # The event entity subscribed in phase 1 (its log line may be gone after HA's restart,
    # or buried in a long batch of topics): a short look, not a condition.
    tool("wait-subscribed", naming.device_event_topic(SIGNALS), "3", env=env, check=False)
    now = utcnow()
    firings = [
        Firing(
            id=1,
            alert_id=11,
            kind=AlertKind.TARGET,
            event=FiringEvent.TARGET_REACHED,
            serial=SIGNALS,
            channel=1,
            time=now,
            value=203.4,
            unit=Unit.FAHRENHEIT,
            threshold=203,
            name="Brisket done",
        ),
        Firing(
            id=2,
            alert_id=12,
            kind=AlertKind.RANGE,
            event=FiringEvent.TOO_HIGH,
            serial=SIGNALS,
            channel=2,
            time=now,
            value=276.5,
            unit=Unit.FAHRENHEIT,
            threshold=275,
            name="Pit range",
        ),
    ]
    deliveries = [publish_firing(publisher, f) for f in firings]
    check.ok(all(d.wait(10) for d in deliveries), "alerts: the broker acknowledged both firings")
    lines = [json.loads(line) for line in watch.stdout]
    watch.wait(30)
    fired = sorted(
        (t["trigger"]["type"], t["trigger"]["subtype"], t["trigger"]["device_id"])
        for t in lines
        if t.get("kind") == "device_trigger"
    )
    check.ok(
        fired == [("target_reached", "probe_1", signals_id), ("too_high", "probe_2", signals_id)],
        f"alerts: watch saw {len(fired)} device triggers fire "
        f"(of {len(header['device_triggers'])} watched): {fired}",
    )
    event_uid = f"{INSTANCE}_{sid}_alerts"
    event_id = next(e["entity_id"] for e in ha["entities"] if e["unique_id"] == event_uid)
    recorded = [
        line["attributes"]
        for line in lines
        if line.get("kind") == "state" and line.get("entity_id") == event_id
    ]
    keys = ("event_type", "alert_id", "name", "probe", "temperature", "unit", "threshold")
    seen = [{k: a.get(k) for k in keys} for a in recorded]
    check.ok(
        seen
        == [
            {
                "event_type": f.event.value,
                "alert_id": f.alert_id,
                "name": f.name,
                "probe": f.channel,
                "temperature": f.value,
                "unit": "°F",
                "threshold": f.threshold,
            }
            for f in firings
        ],
        f"alerts: the Alerts event entity recorded both firings with their attributes: {seen}",
    )
    want[event_uid]["value"] = "fired"
    ha = snapshot(env, [event_uid])
    compare(check, ha, want, "alerts: after the firings", allow_connection_loss=True)
    check.report["alerts"] = {
        "device_triggers_listed": len(listed),
        "device_triggers_fired": fired,
        "event_entity": event_id,
        "event_attributes": recorded,
    }


# --------------------------------------------------------------------------- phase 6

KETTLE = "10:06:1C:3B:55:12"  # hot_and_fast's Smoke Gateway
COOK_INSTANCE = "hacheck_cook"
SESSION_KEYS = (
    "status",
    "name",
    "start_time",
    "duration",
    "min_temperature",
    "max_temperature",
    "avg_temperature",
    "start",
    "end",
    "event",
)


class Daemon:
    """The real bridge (no threads) on the simulator's clock, driven from here."""

    def __init__(self, port: int, workdir: Path) -> None:
        from grillstats_bridge.accounts.service import link_account
        from grillstats_bridge.bridge.daemon import Bridge
        from grillstats_bridge.config import Config
        from grillstats_bridge.simulator.server import CloudSimulator
        from grillstats_bridge.store import migrate, users
        from grillstats_bridge.store.db import Database

        self.cloud = CloudSimulator("hot_and_fast", speed=0).start()
        mqtt = MqttConfig(
            host="127.0.0.1",
            port=port,
            instance_id=COOK_INSTANCE,
            reconnect_min_delay=0.2,
            reconnect_max_delay=2.0,
        )
        config = (
            Config()
            .replace("database", url=f"sqlite:///{workdir / 'sessions.db'}")
            .replace("security", key_file=str(workdir / "grillstats.key"), bcrypt_rounds=4)
            .replace("http", enabled=False)
            .replace("polling", active_interval=60.0, idle_interval=300.0)
            # The kettle's cook ends within the scenario with a start at 300 °F.
            .replace("sessions", start_min=300.0, end_after=900.0)
        )
        config = dataclasses.replace(
            config, thermoworks=ThermoworksConfig(**self.cloud.urls(), timeout=5.0), mqtt=mqtt
        )
        self.database = Database(config.database)
        migrate.upgrade(self.database)
        with self.database.transaction() as db:
            users.add_user(db, "cook@example.com", "grill-password", config.security)
        account = self.cloud.scenario.accounts[0]
        link_account(
            self.database,
            config,
            "cook@example.com",
            account.password,
            provider=account.provider,
            tw_email=account.email,
            store_password=True,
            clock=self.cloud.now,
        )
        self.bridge = Bridge(config, clock=self.cloud.clock, database=self.database)
        self.bridge.start(threads=False)
        assert self.bridge.mqtt.wait_ready(10)

    def run_for(self, seconds: float) -> None:
        """Move the clock from one due poll to the next (as tests/fixtures/bridge.py does)."""
        end = self.cloud.now() + dt.timedelta(seconds=seconds)
        while True:
            target = min(self.bridge.next_event(), end)
            if target > self.cloud.now():
                self.cloud.clock.set(target)
            self.bridge.step()
            if self.cloud.now() >= end:
                break
        self.settle()

    def settle(self) -> None:
        """Everything out to the broker, its acknowledgements taken (the outbox marks)."""
        assert self.bridge.mqtt.flush(10)
        self.bridge.step()
        assert self.bridge.mqtt.flush(10)

    def until(self, condition: Any, what: str) -> bool:
        """Step (the clock standing still) until an MQTT command has done its work."""
        deadline = time.monotonic() + 30
        while not condition():
            if time.monotonic() > deadline:
                print(f"  timed out waiting for {what}", flush=True)
                return False
            self.bridge.step()
            time.sleep(0.05)
        self.settle()
        return True

    def active(self) -> Any:
        return self.bridge.sessions.tracker.active(KETTLE)

    def close(self) -> None:
        self.bridge.shutdown()
        self.cloud.stop()


def press(entity_id: str) -> int:
    """Press a button the way HA's UI does: the button.press service, over HA's REST API."""
    return call_service("button/press", {"entity_id": entity_id})


def call_service(service: str, data: dict[str, Any]) -> int:
    """Call an HA service over its REST API (the harness's own token); the HTTP status."""
    home = Path(os.environ.get("HA_HOME", Path.home() / ".cache" / "ha-check"))
    token = (home / "run" / "token").read_text().strip()
    url = f"http://127.0.0.1:{os.environ.get('HA_PORT', '8123')}/api/services/{service}"
    answer = requests.post(
        url,
        json=data,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    return answer.status_code


def session_entities(env: dict[str, str], want: Any, timeout: float = 60) -> dict[str, Any]:
    """key -> the kettle's session entity as HA shows it, once ``want(entities)`` holds."""
    uids = {f"{COOK_INSTANCE}_{sanitize(KETTLE)}_session_{k}": k for k in SESSION_KEYS}
    deadline = time.monotonic() + timeout
    while True:
        ha = snapshot(env, sorted(uids))
        found = {uids[e["unique_id"]]: e for e in ha["entities"] if e["unique_id"] in uids}
        if want(found) or time.monotonic() > deadline:
            found["_log"] = ha["mqtt_log"]
            return found
        time.sleep(0.5)


def event_is(kind: str, **attributes: Any) -> Any:
    def holds(found: dict[str, Any]) -> bool:
        event = found.get("event")
        got = (event or {}).get("attributes") or {}
        return got.get("event_type") == kind and all(got.get(k) == v for k, v in attributes.items())

    return holds


def sessions_phase(check: Check, env: dict[str, str], port: int, workdir: Path) -> None:
    daemon = Daemon(port, workdir)
    phase = "sessions"
    seen: dict[str, Any] = {}
    try:
        daemon.run_for(10)
        found = session_entities(env, lambda f: len(f) == len(SESSION_KEYS))
        check.ok(
            len(found) - 1 == len(SESSION_KEYS),
            f"{phase}: {len(found) - 1} session entities, {len(SESSION_KEYS)} expected",
        )
        idle = {k: e["state"] for k, e in found.items() if k != "_log"}
        seen["idle"] = idle
        check.ok(
            idle.get("status") == "idle"
            and all(idle.get(k) == "unknown" for k in SESSION_KEYS if k != "status"),
            f"{phase}: idle: status idle, every other entity unknown ({idle})",
        )
        # HA batches its subscriptions: an event sent before it subscribed is lost.
        event_topic = daemon.bridge.publisher.naming.session_event_topic(KETTLE)
        tool("wait-subscribed", event_topic, "20", env=env, check=False)

        # An automatic session: the kettle heats past 300 °F.
        daemon.run_for(40 * 60)
        auto = daemon.active()
        found = session_entities(
            env,
            lambda f: (
                f.get("status", {}).get("state") == "active"
                and event_is("session_started", type="auto")(f)
            ),
        )
        states = {k: e["state"] for k, e in found.items() if k != "_log"}
        seen["auto active"] = states
        status_attrs = found.get("status", {}).get("attributes") or {}
        check.ok(
            auto is not None
            and states.get("status") == "active"
            and status_attrs.get("session_type") == "auto"
            and states.get("name") == auto.name
            and states.get("start_time") not in ("unknown", "unavailable", None)
            and 30 <= float(states.get("duration", -1)) <= 45
            and 300 <= float(states.get("max_temperature", -1)) <= 370,
            f"{phase}: automatic session active in HA ({states}, {status_attrs})",
        )
        check.ok(
            event_is("session_started", type="auto")(found),
            f"{phase}: the Session event recorded session_started",
        )

        # HA's "End session" ends it.
        ids = {k: e["entity_id"] for k, e in found.items() if k != "_log"}
        code = press(ids["end"])
        check.ok(code == 200, f"{phase}: HA accepted the End session press (HTTP {code})")
        ended = daemon.until(lambda: daemon.active() is None, "the automatic session to end")
        found = session_entities(
            env,
            lambda f: (
                f.get("status", {}).get("state") == "idle"
                and event_is("session_ended", type="auto")(f)
            ),
        )
        attrs = (found.get("event") or {}).get("attributes") or {}
        seen["auto ended event"] = attrs
        check.ok(
            ended
            and event_is("session_ended", type="auto", status="completed", end_reason="manual")(
                found
            )
            and attrs.get("session_id") == auto.session_id
            and attrs.get("unit") == "°F"
            and isinstance(attrs.get("avg_temperature"), (int, float)),
            f"{phase}: End session from HA: session_ended event with its summary ({attrs})",
        )
        check.ok(
            found.get("status", {}).get("state") == "idle"
            and found.get("name", {}).get("state") == "unknown",
            f"{phase}: back to idle, values unknown",
        )

        # HA's "Start session", a while, then "End session".
        code = press(ids["start"])
        check.ok(code == 200, f"{phase}: HA accepted the Start session press (HTTP {code})")
        started = daemon.until(lambda: daemon.active() is not None, "the manual session")
        manual = daemon.active()
        found = session_entities(
            env,
            lambda f: (
                f.get("status", {}).get("state") == "active"
                and event_is("session_started", type="manual")(f)
            ),
        )
        status_attrs = found.get("status", {}).get("attributes") or {}
        check.ok(
            started
            and manual is not None
            and status_attrs.get("session_type") == "manual"
            and found.get("name", {}).get("state") == manual.name,
            f"{phase}: Start session from HA: a manual session, active in HA ({status_attrs})",
        )
        daemon.run_for(15 * 60)
        found = session_entities(env, lambda f: f.get("duration", {}).get("state") in ("14", "15"))
        seen["manual active"] = {k: e["state"] for k, e in found.items() if k != "_log"}
        check.ok(
            found.get("duration", {}).get("state") in ("14", "15"),
            f"{phase}: the duration moves ({seen['manual active']})",
        )
        code = press(ids["end"])
        ended = daemon.until(lambda: daemon.active() is None, "the manual session to end")
        found = session_entities(env, event_is("session_ended", type="manual"))
        attrs = (found.get("event") or {}).get("attributes") or {}
        seen["manual ended event"] = attrs
        check.ok(
            code == 200
            and ended
            and manual is not None
            and event_is("session_ended", type="manual", status="completed")(found)
            and attrs.get("session_id") == manual.session_id
            and 14 * 60 <= attrs.get("duration_s", 0) <= 16 * 60,
            f"{phase}: End session from HA: session_ended for the manual session ({attrs})",
        )

        # End once more: nothing to end; the bridge carries on.
        errors = daemon.bridge.stats.pipeline_errors
        press(ids["end"])
        time.sleep(2)  # nothing observable happens: give the press time to arrive
        daemon.bridge.step()
        check.ok(
            daemon.bridge.stats.pipeline_errors == errors and daemon.active() is None,
            f"{phase}: a second End session changes nothing",
        )
        # Phase 4's broker restart made HA's own client log the lost connection: not ours.
        log = [line for line in snapshot(env, [])["mqtt_log"] if CONNECTION_LOST not in line]
        check.ok(
            not log,
            f"{phase}: HA logged {len(log)} MQTT errors or warnings"
            + "".join(f"\n        {line[:300]}" for line in log[:10]),
        )
        check.report[phase] = {"seen": seen, "mqtt_log": log}
        target_round_trip(check, env, daemon)
        range_round_trip(check, env, daemon)
    finally:
        daemon.close()


def target_round_trip(check: Check, env: dict[str, str], daemon: Daemon) -> None:
    """HA's "Pit target" number (number.set_value) creates, changes and removes the alert."""
    from grillstats_bridge.alerts.rules import probe_target_alert

    phase = "alerts: target number"
    uid = f"{COOK_INSTANCE}_{sanitize(KETTLE)}_p1_target"

    def in_database() -> float | None:
        with daemon.database.session() as db:
            alert = probe_target_alert(db, KETTLE, 1)
            return None if alert is None else alert.target_temperature

    def same(state: str | None, want: str) -> bool:
        try:
            return state == want or float(str(state)) == float(want)
        except ValueError:
            return False

    def shown(want: str) -> str | None:
        deadline = time.monotonic() + 30
        while True:
            entity = next(
                (e for e in snapshot(env, [uid])["entities"] if e["unique_id"] == uid), None
            )
            state = None if entity is None else entity["state"]
            if same(state, want) or time.monotonic() > deadline:
                return state
            time.sleep(0.5)

    entity = next(e for e in snapshot(env, [uid])["entities"] if e["unique_id"] == uid)
    seen: dict[str, Any] = {"before": entity["state"]}
    for value, want in ((250, "250"), (262.5, "262.5"), (0, "unknown")):
        code = call_service("number/set_value", {"entity_id": entity["entity_id"], "value": value})
        stored = value or None
        done = daemon.until(lambda: in_database() == stored, f"the target {value}")  # noqa: B023
        state = shown(want)
        seen[str(value)] = {"http": code, "database": in_database(), "ha": state}
        check.ok(
            code == 200 and done and same(state, want),
            f"{phase}: set to {value} in HA: database {in_database()}, HA shows {state}",
        )
    log = [line for line in snapshot(env, [])["mqtt_log"] if CONNECTION_LOST not in line]
    check.ok(not log, f"{phase}: HA logged {len(log)} MQTT errors or warnings")
    check.report[phase] = {"seen": seen, "mqtt_log": log}


def range_round_trip(check: Check, env: dict[str, str], daemon: Daemon) -> None:
    """HA's "Pit range low/high" numbers create, change, refuse and remove the range alert."""
    from grillstats_bridge.alerts.rules import probe_range_alert, set_alert_active

    phase = "alerts: range numbers"
    uids = {side: f"{COOK_INSTANCE}_{sanitize(KETTLE)}_p1_range_{side}" for side in ("low", "high")}

    def in_database() -> tuple[float | None, float | None, str | None, bool] | None:
        with daemon.database.session() as db:
            alert = probe_range_alert(db, KETTLE, 1)
            if alert is None:
                return None
            unit = Unit.parse(alert.temperature_unit or "F").symbol
            return alert.min_temperature, alert.max_temperature, unit, bool(alert.is_active)

    def entities() -> dict[str, Any]:
        found = {e["unique_id"]: e for e in snapshot(env, sorted(uids.values()))["entities"]}
        return {side: found.get(uid) for side, uid in uids.items()}

    def states() -> tuple[str | None, str | None]:
        now = entities()
        low, high = (None if now[s] is None else str(now[s]["state"]) for s in ("low", "high"))
        return low, high

    def waiting() -> bool:
        """Whether the bridge holds a side set alone (in memory) for the Pit."""
        return (KETTLE, 1) in daemon.bridge.alert_control.pending

    def same(state: str | None, want: str) -> bool:
        try:
            return state == want or float(str(state)) == float(want)
        except ValueError:
            return False

    def shown(low: str, high: str) -> tuple[str | None, str | None]:
        deadline = time.monotonic() + 30
        while True:
            got = states()
            if (same(got[0], low) and same(got[1], high)) or time.monotonic() > deadline:
                return got
            time.sleep(0.5)

    first = entities()
    seen: dict[str, Any] = {"before": states()}
    unit = ((first["high"] or {}).get("attributes") or {}).get("unit_of_measurement")
    seen["unit in HA"] = unit
    steps: list[tuple[str, str, float, Any, tuple[str, str]]] = [
        ("low alone waits", "low", 225, None, ("225", "unknown")),
        ("high creates", "high", 275, (225, 275, unit, True), ("225", "275")),
        ("high changes", "high", 300.5, (225, 300.5, unit, True), ("225", "300.5")),
        ("low >= high refused", "low", 320, (225, 300.5, unit, True), ("225", "300.5")),
        ("low changes", "low", 230, (230, 300.5, unit, True), ("230", "300.5")),
    ]
    for what, side, value, stored, want in steps:
        entity_id = first[side]["entity_id"]
        code = call_service("number/set_value", {"entity_id": entity_id, "value": value})
        if what.endswith("refused"):
            time.sleep(2)  # nothing observable happens: give the command time to arrive
            daemon.bridge.step()
            daemon.settle()
            done = in_database() == stored
        else:
            done = daemon.until(
                lambda: in_database() == stored and waiting() == (stored is None),  # noqa: B023
                what,
            )
        state = shown(*want)
        seen[what] = {"http": code, "database": in_database(), "ha": state}
        check.ok(
            code == 200 and done and same(state[0], want[0]) and same(state[1], want[1]),
            f"{phase}: {what} ({side} {value}): database {in_database()}, HA shows {state}",
        )

    # A change made elsewhere (what `alert disable` / `enable` do) shows after a poll.
    for active, want in ((False, ("unknown", "unknown")), (True, ("230", "300.5"))):
        with daemon.database.transaction() as db:
            alert = probe_range_alert(db, KETTLE, 1)
            assert alert is not None
            set_alert_active(db, alert.id, active)
        daemon.run_for(6 * 60)
        state = shown(*want)
        what = "enabled elsewhere" if active else "disabled elsewhere"
        seen[what] = {"database": in_database(), "ha": state}
        check.ok(
            same(state[0], want[0]) and same(state[1], want[1]),
            f"{phase}: {what}: HA shows {state}",
        )

    code = call_service("number/set_value", {"entity_id": first["high"]["entity_id"], "value": 0})
    done = daemon.until(lambda: in_database() is None, "the range alert removed")
    state = shown("unknown", "unknown")
    seen["0 removes"] = {"http": code, "database": in_database(), "ha": state}
    check.ok(
        code == 200 and done and state == ("unknown", "unknown"),
        f"{phase}: high 0 removes it: database {in_database()}, HA shows {state}",
    )
    log = [line for line in snapshot(env, [])["mqtt_log"] if CONNECTION_LOST not in line]
    check.ok(not log, f"{phase}: HA logged {len(log)} MQTT errors or warnings")
    check.report[phase] = {"seen": seen, "mqtt_log": log}


def with_fleet(devices: tuple[Device, ...], count: int) -> tuple[Device, ...]:
    """The sample devices plus ``count`` clones of the sample Signals (a scale check)."""
    signals = devices[0]
    clones = []
    for i in range(count):
        serial = f"10:06:1C:F0:{i // 256:02X}:{i % 256:02X}"
        probes = tuple(dataclasses.replace(p, serial=serial) for p in signals.probes)
        clones.append(
            dataclasses.replace(signals, serial=serial, label=f"Grill {i}", probes=probes)
        )
    return (*devices, *clones)


def wait_for(env: dict[str, str], ids: list[str], want: dict[str, Any], timeout: float) -> Any:
    """Snapshots until every entity shows what it should (or the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        ha = snapshot(env, ids)
        probe = Check()
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            compare(probe, ha, want, "poll", allow_connection_loss=True)
        if not probe.failures or time.monotonic() > deadline:
            return ha
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
