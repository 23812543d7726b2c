"""Two bridges never fight: a second one on the same instance id refuses to start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grillstats_bridge.config import Config, MqttConfig
from grillstats_bridge.simulator.server import CloudSimulator
from tests.fixtures.mqtt import free_port, retained
from tests.test_daemon_process import (
    REPO,
    Daemon,
    daemons,
    get_json,
    linked,
    wait_until,
    write_config,
)

__all__ = ["daemons", "linked"]  # fixtures, used by name


def test_a_second_bridge_on_the_same_instance_id_refuses_to_start(
    tmp_path: Path, linked: tuple[Config, CloudSimulator], daemons: list[Daemon]
) -> None:
    config, cloud = linked
    port = free_port()
    first = Daemon(write_config(tmp_path / "first.yaml", config, cloud, port))
    daemons.append(first)
    health = f"http://127.0.0.1:{port}/health"
    wait_until(lambda: get_json(health)[1].get("pipeline", {}).get("polls", 0) >= 1, "a poll")
    mqtt = config.mqtt
    root = f"{mqtt.base_topic}/{mqtt.instance_id}"
    claim = json.loads(
        retained(mqtt.host, mqtt.port, f"{root}/bridge/claim")[f"{root}/bridge/claim"]
    )
    assert claim["pid"] == first.proc.pid and len(claim["run_id"]) == 32
    connects = get_json(health)[1]["mqtt"]["connects"]

    # Its own database and health port: only the instance id is shared.
    second_config = write_config(
        tmp_path / "second.yaml",
        config.replace("database", url=f"sqlite:///{tmp_path / 'second.db'}"),
        cloud,
        free_port(),
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "grillstats_bridge",
            "--config",
            str(second_config),
            "run",
            "--migrate",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert errors == [
        f"grillstats-bridge: error: another bridge already runs as mqtt.instance_id "
        f"{mqtt.instance_id!r} on {mqtt.host}:{mqtt.port} (pid {first.proc.pid}, started "
        f"{claim['started']}): stop it, or give this one its own mqtt.instance_id"
    ]
    assert "Traceback" not in proc.stderr

    # The first never noticed: the same connection, still online, still polling.
    polls = get_json(health)[1]["pipeline"]["polls"]
    wait_until(lambda: get_json(health)[1]["pipeline"]["polls"] > polls, "another poll")
    code, report = get_json(health)
    assert code == 200 and report["mqtt"]["connected"]
    assert report["mqtt"]["connects"] == connects
    assert retained(mqtt.host, mqtt.port, f"{root}/status")[f"{root}/status"] == b"online"
    assert first.proc.poll() is None


def test_a_claim_nobody_answers_for_is_taken_over(
    tmp_path: Path, linked: tuple[Config, CloudSimulator], daemons: list[Daemon]
) -> None:
    """A bridge that died before the broker sent its will: status online, nobody home."""
    config, cloud = linked
    mqtt = config.mqtt
    root = f"{mqtt.base_topic}/{mqtt.instance_id}"
    stale = {"run_id": "0" * 32, "started": "2026-01-01T00:00:00+00:00", "pid": 1}
    publish_retained(
        config, {f"{root}/status": b"online", f"{root}/bridge/claim": json.dumps(stale).encode()}
    )
    port = free_port()
    daemon = Daemon(write_config(tmp_path / "config.yaml", config, cloud, port))
    daemons.append(daemon)
    daemon.wait_for_line("is stale: it does not answer; taking over")
    health = f"http://127.0.0.1:{port}/health"
    wait_until(lambda: get_json(health)[1].get("pipeline", {}).get("polls", 0) >= 1, "a poll")
    claim = retained(mqtt.host, mqtt.port, f"{root}/bridge/claim")[f"{root}/bridge/claim"]
    assert json.loads(claim)["pid"] == daemon.proc.pid


def publish_retained(config: Config, messages: dict[str, bytes]) -> None:
    from grillstats_bridge.mqtt.client import MqttClient

    client = MqttClient(config.mqtt, status_topic=None, client_id="test-claim-writer")
    client.start()
    try:
        assert client.wait_ready(10)
        for topic, payload in messages.items():
            client.publish_state(topic, payload, qos=1, retain=True)
        assert client.flush(10)
    finally:
        client.stop()


def test_processes_of_one_bridge_let_each_other_in_and_refuse_any_other(
    mqtt_config: MqttConfig,
) -> None:
    """On the real broker: a claim with a bridge key admits that key only."""
    from grillstats_bridge.mqtt.claim import InstanceClaim, InstanceTaken
    from grillstats_bridge.mqtt.client import MqttClient

    root = f"{mqtt_config.base_topic}/{mqtt_config.instance_id}"

    def claim_of(bridge: str, client: MqttClient) -> InstanceClaim:
        return InstanceClaim(
            client,
            mqtt_config,
            root=root,
            status_topic=f"{root}/status",
            started="2026-12-06T00:00:00+00:00",
            bridge=bridge,
        )

    running = MqttClient(
        mqtt_config, status_topic=f"{root}/bridge/process/a-0/status", client_id="claim-a-0"
    )
    first = claim_of("key-1", running)
    running.add_connect_hook(first.messages)
    first.check()  # nobody there yet
    running.start()
    try:
        assert running.wait_ready(10) and running.flush(10)
        held = retained(mqtt_config.host, mqtt_config.port, f"{root}/#")
        assert held[f"{root}/status"] == b"online"  # said by the process, not its will
        assert held[f"{root}/bridge/process/a-0/status"] == b"online"
        idle = MqttClient(mqtt_config, status_topic=None, client_id="claim-idle")
        claim_of("key-1", idle).check()  # the same bridge: let in
        for other in ("key-2", ""):  # another bridge of several processes, or of one
            with pytest.raises(InstanceTaken, match="another bridge already runs"):
                claim_of(other, idle).check()
    finally:
        running.stop()
    # A clean stop says offline on the process's own topic only.
    held = retained(mqtt_config.host, mqtt_config.port, f"{root}/#")
    assert held[f"{root}/bridge/process/a-0/status"] == b"offline"
    assert held[f"{root}/status"] == b"online"
