"""The README's "run the main job" command: the demo, end to end, as a user runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import sqlalchemy as sa

from grillstats_bridge.cli.demo import DEMO_BASE_TOPIC, demo_instance_id
from grillstats_bridge.config import MqttConfig
from tests.fixtures.mqtt import Subscriber, free_port, retained

REPO = Path(__file__).resolve().parent.parent


def run_demo(
    tmp_path: Path,
    env: dict[str, str],
    until: str,
    timeout: float = 60,
    during: Callable[[str], None] | None = None,
) -> tuple[int, str]:
    """Start the demo, wait for a line containing ``until`` in its log, call ``during`` with
    the output so far, then press Ctrl-C."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "grillstats_bridge", "demo", "--no-view", "--speed", "3000"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stdout:
            lines.append(line)
            if until in line:
                break
            assert time.monotonic() < deadline, "".join(lines[-20:])
        if during is not None:
            during("".join(lines))
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        lines.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, "".join(lines)


def log_in_and_see_the_cook(out: str) -> None:
    """What the demo prints is enough to log in and see the live cook and its chart."""
    found = re.search(r"demo: web app at (\S+) \(log in as (\S+), password (\S+)\)", out)
    assert found, out
    url, email, password = found.groups()
    csrf = re.compile(r'name="csrf" value="([^"]+)"')
    with httpx2.Client(base_url=url, timeout=10) as client:
        token = csrf.findall(client.get("login").text)[0]
        answer = client.post("login", data={"email": email, "password": password, "csrf": token})
        assert answer.status_code == 303, answer.text
        devices = client.get("devices").text
        assert "°F" in devices and "data-serial" in devices
        session = re.search(r'href="/sessions/(\d+)"', client.get("sessions").text)
        assert session, "no session listed"
        page = client.get(f"sessions/{session.group(1)}").text
        assert "<polyline" in page


def test_demo_runs_the_whole_bridge_and_stops_cleanly(
    tmp_path: Path, mqtt_config: MqttConfig, subscriber: Subscriber
) -> None:
    env = {
        "GRILLSTATS_MQTT_HOST": mqtt_config.host,
        "GRILLSTATS_MQTT_PORT": str(mqtt_config.port),
        "GRILLSTATS_MQTT_INSTANCE_ID": mqtt_config.instance_id,
        "GRILLSTATS_MQTT_BASE_TOPIC": mqtt_config.base_topic,
        "GRILLSTATS_MQTT_DISCOVERY_PREFIX": mqtt_config.discovery_prefix,
    }
    code, out = run_demo(tmp_path, env, until="alert fired", during=log_in_and_see_the_cook)
    assert code == 0, out
    assert "demo: simulator 'brisket'" in out and "demo stopped cleanly" in out
    assert "Traceback" not in out
    # It published the simulated devices under its own instance id and base topic, never
    # the installation's (the environment names those), and cleared them when it stopped.
    subscriber.sync()
    demo_id = demo_instance_id((tmp_path / "grillstats-demo").resolve())
    prefix = mqtt_config.discovery_prefix
    configs = {m.topic for m in subscriber.snapshot() if m.topic.endswith("/config") and m.payload}
    assert configs and all(t.split("/")[2] == demo_id for t in configs)
    assert not [
        m for m in subscriber.snapshot() if m.topic.startswith(f"{mqtt_config.base_topic}/")
    ]
    assert "demo: cleared the " in out
    host, port = mqtt_config.host, mqtt_config.port
    assert retained(host, port, f"{prefix}/#") == {}
    assert retained(host, port, f"{DEMO_BASE_TOPIC}/{demo_id}/#") == {}
    db = tmp_path / "grillstats-demo" / "demo.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM readings")).scalar_one() > 0
        assert conn.execute(sa.text("SELECT count(*) FROM alert_history")).scalar_one() >= 1
    engine.dispose()


def test_demo_starts_a_private_broker_when_none_answers(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    code, out = run_demo(tmp_path, {"GRILLSTATS_MQTT_PORT": str(port)}, until="polling ThermoWorks")
    assert code == 0, out
    assert f"none on localhost:{port}" in out and "private Mosquitto on 127.0.0.1:" in out
