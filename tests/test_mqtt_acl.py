"""Commands only from their owner: per-user topics and the ACL that ``mqtt acl`` prints.

The end-to-end test runs a real Mosquitto of its own, configured from the
generated ACL and a password file: user B's login cannot change user A's alert
target or start a session on A's device (the broker drops it), nor get past the
bridge by naming A's device under B's own topics (the bridge refuses it), while
A's login can do both. The default layout stays as it is (tests/golden/ids.txt).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import sqlalchemy as sa
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from grillstats_bridge.cli import main
from grillstats_bridge.config import ConfigError, MqttConfig, load_config
from grillstats_bridge.domain import Device
from grillstats_bridge.ha.acl import mosquitto_acl
from grillstats_bridge.ha.entities import DeviceView
from grillstats_bridge.ha.ids import device_id
from grillstats_bridge.ha.naming import Naming
from grillstats_bridge.ha.payloads import device_publication
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import Device as DeviceRow
from grillstats_bridge.store.models import GrillingSession, ProbeRow, TemperatureAlert
from grillstats_bridge.store.users import add_user
from tests.fixtures.bridge import MakeRig, Rig
from tests.fixtures.cloud import SIGNALS
from tests.fixtures.mqtt import WAIT, PrivateBroker, close_paho, make_mqtt_config
from tests.test_daemon import FAST

B_EMAIL = "sam@example.com"
B_SERIAL = "BB:00:00:00:00:01"
T0_NAMING = Naming(instance_id="grillstats")


def test_per_user_topics_move_the_topics_and_keep_every_id() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    view = DeviceView.of(Device(serial=SIGNALS, label="Smoker", last_seen=now), now, None)
    shared = device_publication(T0_NAMING, view)
    per_user = Naming(instance_id="grillstats", per_user_topics=True)
    assert per_user.for_user(None) == per_user.for_user(None)  # no user: the shared tree
    mine = device_publication(per_user.for_user(7), view)
    sid = device_id(SIGNALS)
    assert {s.topic for s in mine.states} == {
        s.topic.replace("grillstats/grillstats/device/", "grillstats/grillstats/user/7/device/")
        for s in shared.states
    }
    assert all(f"/grillstats_u7/{sid}" in c.topic for c in mine.configs)
    # the entities Home Assistant knows are the same ones
    assert [c.payload["unique_id"] for c in mine.configs] == [
        c.payload["unique_id"] for c in shared.configs
    ]
    assert per_user.command_filter("session/start/set") == (
        "grillstats/grillstats/user/+/device/+/session/start/set"
    )
    assert per_user.command_root(f"grillstats/grillstats/user/7/device/{sid}/x") == (
        7,
        "grillstats/grillstats/user/7",
    )
    for bad in ("grillstats/grillstats/device/x/y", "grillstats/grillstats/user/07/device/x"):
        with pytest.raises(ValueError, match="not a user's command topic"):
            per_user.command_root(bad)
    assert T0_NAMING.command_root("anything") == (None, "grillstats/grillstats")


def test_the_acl_gives_each_login_its_own_devices() -> None:
    naming = Naming(instance_id="home", base_topic="gs", per_user_topics=True)
    acl = mosquitto_acl(
        naming,
        bridge_login="bridge",
        users=[(1, "pat@example.com"), (2, "sam@example.com")],
        login_pattern="{email}",
    )
    blocks = acl.split("\n\n")
    assert blocks[1].splitlines()[1:] == [
        "user bridge",
        "topic readwrite gs/home/#",
        "topic readwrite homeassistant/#",
    ]
    assert blocks[3].splitlines()[1:] == [
        "user sam@example.com",
        "topic read gs/home/user/2/#",
        "topic write gs/home/user/2/device/+/probe/+/+/set",
        "topic write gs/home/user/2/device/+/session/+/set",
        "topic read homeassistant/+/home_u2/#",
        "topic read gs/home/status",
        "topic readwrite homeassistant/status",
    ]
    with pytest.raises(ValueError, match="per-user topics are off"):
        mosquitto_acl(T0_NAMING, bridge_login="b", users=[], login_pattern="{email}")


# --------------------------------------------------------------------------- on a real broker


class Login:
    """A broker client with a login (Home Assistant's, say): publishes and records."""

    def __init__(self, broker: PrivateBroker, username: str, password: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"test-{username}-{uuid.uuid4().hex[:8]}",
        )
        self._client.username_pw_set(username, password)
        self._client.on_message = self._on_message
        connected = threading.Event()

        def on_connect(client: Any, userdata: Any, flags: Any, code: Any, props: Any) -> None:
            if code == 0:
                connected.set()

        self._client.on_connect = on_connect
        self._client.connect(broker.host, broker.port, 30)
        self._client.loop_start()
        assert connected.wait(WAIT), f"{username} could not connect"

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes) -> None:
        """QoS 1, acknowledged: the broker has handled it (forwarded, or dropped by its ACL)."""
        info = self._client.publish(topic, payload, qos=1)
        info.wait_for_publish(WAIT)
        assert info.is_published()

    def subscribe(self, *filters: str) -> None:
        for f in filters:
            self._client.subscribe(f, 1)

    def wait_for(self, topic: str) -> None:
        with self._cond:
            found = self._cond.wait_for(lambda: any(t == topic for t, _ in self.messages), WAIT)
            assert found, f"nothing on {topic}"

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        close_paho(self._client)


def until(rig: Rig, condition: Callable[[], bool], what: str) -> None:
    """Run the bridge's queued work (commands) until ``condition`` holds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        rig.bridge.step()  # the clock stands still: this only runs queued jobs
        time.sleep(0.005)  # the command is on its way from the broker


def targets(database: Database, serial: str, channel: int) -> list[float | None]:
    with database.session() as db:
        return list(
            db.scalars(
                sa.select(TemperatureAlert.target_temperature).where(
                    TemperatureAlert.device_id == serial,
                    TemperatureAlert.probe_id == str(channel),
                )
            )
        )


def sessions(database: Database) -> list[tuple[str, int]]:
    with database.session() as db:
        rows = db.execute(sa.select(GrillingSession.device_id, GrillingSession.user_id))
        return [(serial, user) for serial, user in rows]


def generated_acl(rig: Rig, mqtt: MqttConfig, tmp_path: Path, capsys: Any) -> str:
    """What ``grillstats-bridge mqtt acl`` prints for this bridge's users."""
    path = tmp_path / "config.yaml"
    config = {
        "database": {"url": rig.config.database.url},
        "security": {"key_file": rig.config.security.key_file},
        "mqtt": {
            "host": mqtt.host,
            "port": mqtt.port,
            "instance_id": mqtt.instance_id,
            "base_topic": mqtt.base_topic,
            "discovery_prefix": mqtt.discovery_prefix,
            "username": mqtt.username,
            "password": mqtt.password,
        },
    }
    path.write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["--config", str(path), "mqtt", "acl"]) == 2  # per-user topics are off
    assert "set mqtt.per_user_topics: true" in capsys.readouterr().err
    config["mqtt"]["per_user_topics"] = True  # type: ignore[index]
    path.write_text(yaml.safe_dump(config))
    assert main(["--config", str(path), "mqtt", "acl"]) == 0
    return str(capsys.readouterr().out)


def test_a_login_changes_only_its_own_users_alerts_and_sessions(
    make_rig: MakeRig,
    database: Database,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = PrivateBroker(tmp_path / "broker", persistence=False)
    broker.workdir.mkdir()
    mqtt = make_mqtt_config(
        broker.broker,
        f"t{uuid.uuid4().hex[:10]}",
        per_user_topics=True,
        username="bridge",
        password="bridge-secret",
    )
    rig = make_rig("brisket", mqtt=mqtt, start=False, **FAST)
    a = rig.user_id
    with database.transaction() as db:  # user B and a device of theirs
        b = add_user(db, B_EMAIL, "correct horse battery", rig.config.security).id
        row = DeviceRow(user_id=b, device_id=B_SERIAL)
        row.probes.append(ProbeRow(channel=1, unit="F"))
        db.add(row)
    broker.acl = generated_acl(rig, mqtt, tmp_path, capsys)
    logging.getLogger().addHandler(caplog.handler)  # the CLI made its own the only handler
    assert f"user grill-{a}\n" in broker.acl and f"user grill-{b}\n" in broker.acl
    broker.passwords = {"bridge": "bridge-secret", f"grill-{a}": "pass-a", f"grill-{b}": "pass-b"}
    broker.start()
    try:
        rig.bridge.start(threads=False)
        rig.run_for(10)  # the first poll: A's devices published under A's topics
        a_root = f"{mqtt.base_topic}/{mqtt.instance_id}/user/{a}/device/{device_id(SIGNALS)}"
        b_root = f"{mqtt.base_topic}/{mqtt.instance_id}/user/{b}/device/{device_id(SIGNALS)}"
        pat, sam = Login(broker, f"grill-{a}", "pass-a"), Login(broker, f"grill-{b}", "pass-b")
        try:
            # reading: A sees A's states, B does not (B's own status topic comes through)
            status = f"{mqtt.base_topic}/{mqtt.instance_id}/status"
            pat.subscribe(f"{a_root}/#")
            pat.wait_for(f"{a_root}/probe/1")
            sam.subscribe(f"{a_root}/#", status)
            sam.wait_for(status)
            assert [t for t, _ in sam.messages] == [status]

            caplog.set_level(logging.WARNING)
            sam.publish(f"{a_root}/probe/1/target/set", b"230")  # dropped by the broker
            sam.publish(f"{b_root}/probe/1/target/set", b"231")  # B's topics, A's device
            pat.publish(f"{a_root}/probe/2/target/set", b"150")
            until(rig, lambda: bool(targets(database, SIGNALS, 2)), "A's target on probe 2")
            refused = [r.getMessage() for r in caplog.records if "is not user" in r.getMessage()]
            assert refused == [
                f"alerts: target for probe 1 of {device_id(SIGNALS)} not set: "
                f"device {device_id(SIGNALS)} is not user {b}'s"
            ]
            assert targets(database, SIGNALS, 1) == []
            pat.publish(f"{a_root}/probe/1/target/set", b"225")
            until(rig, lambda: targets(database, SIGNALS, 1) == [225.0], "A's target on probe 1")

            sam.publish(f"{a_root}/session/start/set", b"PRESS")  # dropped by the broker
            sam.publish(f"{b_root}/session/start/set", b"PRESS")  # refused by the bridge
            pat.publish(f"{a_root}/session/start/set", b"PRESS")
            until(rig, lambda: bool(sessions(database)), "A's session")
            assert sessions(database) == [(SIGNALS, a)]
            assert sum("is not user" in r.getMessage() for r in caplog.records) == 2
            assert rig.bridge.stats.pipeline_errors == 0
        finally:
            pat.close()
            sam.close()
        rig.bridge.shutdown()
        # 'mqtt cleanup' finds the per-user configs on the broker too (node <instance>_u<id>)
        assert (
            main(["--config", str(tmp_path / "config.yaml"), "mqtt", "cleanup", "--broker-only"])
            == 0
        )
        bridge = Login(broker, "bridge", "bridge-secret")
        try:
            marker = f"{mqtt.base_topic}/{mqtt.instance_id}/test-marker"
            bridge.subscribe(f"{mqtt.discovery_prefix}/#", f"{mqtt.base_topic}/#")
            # the broker handles the subscriptions (sending what it retains) before this
            bridge.publish(marker, b"x")
            bridge.wait_for(marker)
            assert [t for t, _ in bridge.messages] == [marker]
        finally:
            bridge.close()
    finally:
        rig.bridge.shutdown()
        broker.stop()


@pytest.mark.parametrize("pattern", ["grill", "{nope}", "grill {user_id}"])
def test_a_login_pattern_needs_a_placeholder_and_no_spaces(tmp_path: Path, pattern: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"mqtt": {"acl_login": pattern}}))
    with pytest.raises(ConfigError, match=r"^mqtt.acl_login: a login pattern with \{user_id\}"):
        load_config(path, environ={})
