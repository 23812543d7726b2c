"""The publisher against the real Mosquitto: the publish cycle, updates, vanishing entities,
HA birth, broker restarts, two instances side by side and ``mqtt cleanup``."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from grillstats_bridge import __version__
from grillstats_bridge.alerts.entities import alert_views
from grillstats_bridge.cli import main
from grillstats_bridge.config import MqttConfig
from grillstats_bridge.domain import Device, Measurement, Poll, Unit
from grillstats_bridge.ha.cook_entities import ProbeCook
from grillstats_bridge.ha.entities import (
    DEVICE,
    PROBE,
    SESSION,
    TABLE,
    AccountStatus,
    BridgeHealth,
    BridgeStatus,
    Table,
)
from grillstats_bridge.ha.naming import Naming
from grillstats_bridge.ha.publisher import Publisher, naming_for
from grillstats_bridge.mqtt.client import MqttClient
from grillstats_bridge.mqtt.retained import read_retained
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.publications import PublicationStore
from tests import ha_rules
from tests.fixtures.mqtt import (
    WAIT,
    Broker,
    PrivateBroker,
    Received,
    Subscriber,
    TcpProxy,
    clear_retained,
    make_mqtt_config,
    retained,
)
from tests.sample_devices import GATEWAY, SIGNALS, sample_devices

pytestmark = pytest.mark.mqtt

NOW = datetime(2026, 11, 27, 18, 30, tzinfo=UTC)
COOKING = ProbeCook(
    channel=1,
    state="stalled",
    done_at=NOW + timedelta(hours=3),
    low=NOW + timedelta(hours=2),
    high=NOW + timedelta(hours=5),
    minutes_left=180.0,
    minutes_low=120.0,
    minutes_high=300.0,
    progress=72.5,
    stalled=True,
    method="stall",
    stall_started=NOW - timedelta(minutes=50),
)
GOLDEN = Path(__file__).parent / "golden" / "publish_cycle.txt"
BRIDGE = BridgeStatus(
    status=BridgeHealth.OK,
    last_poll=NOW - timedelta(seconds=5),
    cloud_errors=3,
    accounts=(AccountStatus(user_id=1, label="alice@example.com"),),
)


@dataclasses.dataclass
class Bridge:
    client: MqttClient
    publisher: Publisher
    naming: Naming

    def expected_topics(self) -> set[str]:
        return {r.topic for r in self.publisher.records()}


@pytest.fixture
def make_bridge() -> Iterator[Callable[..., Bridge]]:
    """Client + publisher pairs, stopped at the end whatever happens."""
    made: list[Bridge] = []

    def make(
        config: MqttConfig,
        *,
        store: PublicationStore | None = None,
        table: Table = TABLE,
        start: bool = True,
    ) -> Bridge:
        naming = naming_for(config)
        client = MqttClient(config, status_topic=naming.status_topic, clock=lambda: NOW)
        publisher = Publisher(client, config, store=store, table=table, clock=lambda: NOW)
        bridge = Bridge(client, publisher, naming)
        made.append(bridge)
        if start:
            client.start()
            assert client.wait_ready(WAIT)
        return bridge

    yield make
    for bridge in made:
        bridge.publisher.close()
        bridge.client.stop(timeout=2)


def publish_all(bridge: Bridge, *, step: int = 0, cook: bool = False) -> None:
    """The bridge and the sample account, with the records saved (the daemon's pipeline's job);
    with ``cook``, a target on the Signals' first probe and its cook estimate too."""
    bridge.publisher.publish_bridge_state(BRIDGE)
    if cook:
        target = {(SIGNALS, 1): Measurement(203.0, Unit.FAHRENHEIT)}
        bridge.publisher.publish_alerts(alert_views(target, set()))
        bridge.publisher.publish_cook({SIGNALS: (COOKING,)})
    bridge.publisher.publish_devices(1, sample_devices(NOW, step=step), now=NOW)
    assert bridge.publisher.save_records()


def wait_retained(broker: Broker, config: MqttConfig, want: dict[str, bytes]) -> dict[str, bytes]:
    """Poll the broker's retained messages until they are exactly ``want``."""
    deadline = time.monotonic() + WAIT
    while True:
        held = retained(broker.host, broker.port, *namespaces(config))
        if held == want or time.monotonic() > deadline:
            assert held == want, _diff(held, want)
            return held
        time.sleep(0.05)


def namespaces(config: MqttConfig) -> tuple[str, str]:
    return f"{config.base_topic}/#", f"{config.discovery_prefix}/#"


def _diff(held: dict[str, bytes], want: dict[str, bytes]) -> str:
    missing = sorted(set(want) - set(held))
    extra = sorted(set(held) - set(want))
    changed = sorted(t for t in set(want) & set(held) if want[t] != held[t])
    return f"missing {missing[:5]}, extra {extra[:5]}, changed {changed[:5]}"


def golden_lines(
    messages: list[Received], qos: dict[str, int], config: MqttConfig, held: dict[str, bytes]
) -> list[str]:
    """``qos retained topic payload``, with the test's own ids put back to placeholders."""
    lines = []
    for m in messages:
        retain = "R" if held.get(m.topic) == m.payload else "-"
        line = f"{qos[m.topic]} {retain} {m.topic} {m.text}"
        for value, name in (
            (config.discovery_prefix, "{prefix}"),
            (config.base_topic, "{base}"),
            (config.instance_id, "{instance}"),
            (f'"sw_version":"{__version__}"', '"sw_version":"{version}"'),
        ):
            line = line.replace(value, name)
        lines.append(line)
    return lines


# ---------------------------------------------------------------------------- the cycle


def test_publish_cycle_golden(
    mqtt_broker: Broker,
    mqtt_config: MqttConfig,
    subscriber: Subscriber,
    ordered_subscriber: Subscriber,
    make_bridge: Callable[..., Bridge],
) -> None:
    """What one bridge start with five devices puts on the broker, message by message.

    Exact topics, payloads, QoS and retain flags, in order: ``online``, every discovery
    config, then every state. Regenerate with GRILLSTATS_UPDATE_GOLDEN=1 and review the diff.
    """
    bridge = make_bridge(mqtt_config, start=False)
    publish_all(bridge, cook=True)  # before the connection: the connect flush carries it all
    bridge.client.start()
    assert bridge.client.wait_ready(WAIT) and bridge.client.flush(WAIT)
    expected = len(bridge.expected_topics())
    got = ordered_subscriber.wait_for(lambda ms: len(ms) >= expected, what=f"{expected} messages")
    qos = {m.topic: m.qos for m in subscriber.wait_for(lambda ms: len(ms) >= expected)}
    held = retained(mqtt_broker.host, mqtt_broker.port, *namespaces(mqtt_config))
    lines = golden_lines(got, qos, mqtt_config, held)
    if os.environ.get("GRILLSTATS_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert lines == GOLDEN.read_text(encoding="utf-8").splitlines()
    assert set(held) == bridge.expected_topics()  # everything retained, nothing else
    prefix = mqtt_config.discovery_prefix
    problems = ha_rules.all_problems([(t, p.decode()) for t, p in held.items()], prefix)
    assert problems == []
    # The sample bridge covers the whole table: every row of every scope is in the golden.
    published = {line.split()[2].rsplit("/", 2)[1] for line in lines if "/config" in line}
    for scope in (
        TABLE.bridge,
        TABLE.account,
        TABLE.device,
        TABLE.probe,
        TABLE.session,
    ):
        for row in scope.entities:
            assert any(o.endswith(f"_{row.key}") for o in published), (scope.name, row.key)


def test_updates_publish_only_what_changed(
    mqtt_config: MqttConfig, ordered_subscriber: Subscriber, make_bridge: Callable[..., Bridge]
) -> None:
    subscriber = ordered_subscriber
    # Without the session and alert rows: the ordering below holds while the configs (QoS 1)
    # fit in the client's MAX_INFLIGHT window (100); beyond it paho queues them and the QoS 0
    # states overtake (harmless for HA, the states are retained; see the session report).
    small = Table(device=DEVICE, probe=PROBE, session=dataclasses.replace(SESSION, entities=()))
    bridge = make_bridge(mqtt_config, table=small)
    publish_all(bridge)
    assert bridge.client.flush(WAIT)
    subscriber.wait_for(lambda ms: len(ms) >= len(bridge.expected_topics()), what="the cycle")
    subscriber.sync()
    subscriber.clear()

    publish_all(bridge, step=1)  # every plugged probe moved half a degree; nothing else
    root = bridge.naming.root
    plugged = [
        f"{root}/device/{serial}/probe/{ch}"
        for serial, ch in [
            ("10_06_1C_6F_47_70", 1),
            ("10_06_1C_6F_47_70", 2),
            ("10_06_1C_6F_47_70", 4),
            ("2C_F4_32_11_22_33", 1),
            ("M100081209", 1),
            ("B0_B2_1C_00_00_01", 1),
            ("B0_B2_1C_00_00_01", 2),
            ("10_06_1C_AA_BB_CC", 1),
            ("10_06_1C_AA_BB_CC", 2),
        ]
    ]
    got = subscriber.wait_for(lambda ms: len(ms) >= len(plugged), what="the changed probes")
    subscriber.sync()
    got = subscriber.snapshot()
    assert [m.topic for m in got] == plugged
    assert json.loads(got[0].payload)["temperature"] == 165.8
    assert all(m.qos == 0 for m in got)


def test_vanished_devices_probes_and_entity_kinds_are_cleared(
    mqtt_broker: Broker,
    mqtt_config: MqttConfig,
    database: Database,
    make_bridge: Callable[..., Bridge],
) -> None:
    store = PublicationStore(database, mqtt_config.instance_id)
    first = make_bridge(mqtt_config, store=store)
    publish_all(first)
    assert first.client.flush(WAIT)
    everything = wait_retained(mqtt_broker, mqtt_config, _expected(first))
    assert {topic for topic, _, _ in store.load()} == set(everything)

    # The bridge restarts with a newer table that no longer has the alarm entity, and
    # the account lost its gateway and probe 4 of the Signals.
    first.client.stop()
    no_alarm = dataclasses.replace(
        TABLE,
        probe=dataclasses.replace(
            TABLE.probe, entities=tuple(e for e in TABLE.probe.entities if e.key != "alarm")
        ),
    )
    second = make_bridge(
        mqtt_config, store=PublicationStore(database, mqtt_config.instance_id), table=no_alarm
    )
    devices = sample_devices(NOW)
    signals = devices[0]
    fewer = [
        dataclasses.replace(signals, probes=signals.probes[:3]),
        *(d for d in devices if d.serial not in (SIGNALS, GATEWAY)),
    ]
    second.publisher.publish_bridge_state(BRIDGE)
    second.publisher.publish_devices(1, fewer, now=NOW)
    assert second.publisher.save_records()
    assert second.client.flush(WAIT)
    now_held = wait_retained(mqtt_broker, mqtt_config, _expected(second))
    gone = set(everything) - set(now_held)
    assert not any("_alarm/" in t for t in now_held)
    assert not any("2C_F4_32_11_22_33" in t for t in now_held)
    assert not any("10_06_1C_6F_47_70_p4" in t or "70/probe/4" in t for t in now_held)
    # 10 alarm configs; the gateway's 5 configs, its alerts event and 10 of its session,
    # its probe's other 2 and 9 of its alerts (3 numbers, active, 5 triggers), 4 states
    # (availability, device, session, probe); p4's 2 + 9 configs + 1 state
    assert len(gone) == 10 + (5 + 1 + 10 + 2 + 9 + 4) + (2 + 9 + 1)
    assert {topic for topic, _, _ in store.load()} == set(now_held)
    assert set(now_held) < set(everything)  # nothing new: no `_2` duplicates, no ghosts


def _expected(bridge: Bridge) -> dict[str, bytes]:
    """What the broker should hold: the publisher's last payload for each remembered topic."""
    pub = bridge.publisher
    out = {t: p.encode() for t, p in pub.retained().items()}
    out[bridge.naming.status_topic] = b"online"
    return out


def test_devices_before_the_bridge_state_still_put_the_bridge_first(
    mqtt_config: MqttConfig, ordered_subscriber: Subscriber, make_bridge: Callable[..., Bridge]
) -> None:
    """Devices name the bridge as via_device: its configs must reach HA before theirs."""
    bridge = make_bridge(mqtt_config)
    # the bridge's 10 (with Poll now and Log level), the device's 4 + its alerts event
    # + 10 of its session,
    # 4 probes x (3 + 3 alert numbers + alert active + 5 device triggers)
    n_bridge = 10
    n_configs = n_bridge + 4 + 1 + 10 + 4 * 12
    poll = Poll(user_id=1, polled_at=NOW, devices=sample_devices(NOW)[:1], readings=())
    bridge.publisher.publish_devices(poll.user_id, poll.devices, now=poll.polled_at)
    assert bridge.client.flush(WAIT)
    configs = [
        m.topic
        for m in ordered_subscriber.wait_for(
            lambda ms: sum("/config" in m.topic for m in ms) >= n_configs,
            what="configs",
        )
        if m.topic.endswith("/config")
    ]
    assert all("/bridge_" in t for t in configs[:n_bridge]), configs[: n_bridge + 2]
    assert not any("/bridge_" in t for t in configs[n_bridge:])
    held = retained(
        ordered_subscriber.host, ordered_subscriber.port, f"{bridge.naming.root}/bridge"
    )
    assert json.loads(held[f"{bridge.naming.root}/bridge"])["status"] == "starting"
    health = bridge.publisher.health().as_dict()
    assert health["devices"] == 1 and health["entities"] == n_configs


def test_account_unlinked_and_device_offline(
    mqtt_broker: Broker, mqtt_config: MqttConfig, make_bridge: Callable[..., Bridge]
) -> None:
    bridge = make_bridge(mqtt_config)
    publish_all(bridge)
    bridge.publisher.publish_devices(
        2, [dataclasses.replace(sample_devices(NOW)[0], serial="X2")], now=NOW
    )
    assert bridge.client.flush(WAIT)
    avail = f"{bridge.naming.root}/device/10_06_1C_6F_47_70/availability"
    held = wait_retained(mqtt_broker, mqtt_config, _expected(bridge))
    assert held[avail] == b"online"

    bridge.publisher.refresh(NOW + timedelta(hours=1))  # no poll came: devices fell silent
    bridge.publisher.forget_account(2)
    assert bridge.client.flush(WAIT)
    held = wait_retained(mqtt_broker, mqtt_config, _expected(bridge))
    assert held[avail] == b"offline"
    assert not any("/X2" in t or "_X2_" in t for t in held)
    assert bridge.publisher.health().accounts == 1


# ---------------------------------------------------------------------------- HA and the broker


def test_home_assistant_birth_republishes_discovery_then_states(
    mqtt_config: MqttConfig, ordered_subscriber: Subscriber, make_bridge: Callable[..., Bridge]
) -> None:
    subscriber = ordered_subscriber
    # Without the session and alert rows: the ordering below holds while the configs (QoS 1)
    # fit in the client's MAX_INFLIGHT window (100); beyond it paho queues them and the QoS 0
    # states overtake (harmless for HA, the states are retained; see the session report).
    small = Table(device=DEVICE, probe=PROBE, session=dataclasses.replace(SESSION, entities=()))
    bridge = make_bridge(mqtt_config, table=small)
    publish_all(bridge)
    assert bridge.client.flush(WAIT)
    total = len(bridge.expected_topics())
    subscriber.wait_for(lambda ms: len(ms) >= total, what="the cycle")
    subscriber.sync()
    subscriber.clear()

    ha_status = f"{mqtt_config.discovery_prefix}/status"
    subscriber._client.publish(ha_status, "offline")  # HA's will: nothing to do
    subscriber._client.publish(ha_status, "online")  # HA's birth (QoS 0, not retained)
    got = subscriber.wait_for(
        lambda ms: len([m for m in ms if m.topic != ha_status]) >= total - 1,
        what="the republish",
    )
    mine = [m for m in got if m.topic != ha_status]
    kinds = [
        "config" if m.topic.startswith(mqtt_config.discovery_prefix) else "state" for m in mine
    ]
    assert kinds == sorted(kinds)  # every config before the first state
    assert kinds.count("config") == bridge.publisher.health().entities
    assert bridge.publisher.health().ha_births == 1


@pytest.mark.parametrize("persistence", [False, True], ids=["no-persistence", "persistence"])
def test_broker_restart_brings_every_entity_back(
    persistence: bool,
    instance_id: str,
    private_broker: Callable[..., PrivateBroker],
    make_bridge: Callable[..., Bridge],
) -> None:
    broker = private_broker(persistence=persistence)
    config = make_mqtt_config(broker.broker, instance_id)
    bridge = make_bridge(config)
    publish_all(bridge)
    assert bridge.client.flush(WAIT)
    before = wait_retained(broker.broker, config, _expected(bridge))

    broker.restart()
    # the bridge notices, reconnects with back-off and republishes everything
    after = wait_retained(broker.broker, config, before)
    assert after[bridge.naming.status_topic] == b"online"
    assert bridge.client.health().connects >= 2

    # and keeps publishing: a new value goes through
    publish_all(bridge, step=2)
    assert bridge.client.flush(WAIT)
    wait_retained(broker.broker, config, _expected(bridge))


def test_a_new_cook_estimate_publishes_what_a_whole_rebuild_would(
    mqtt_broker: Broker, mqtt_config: MqttConfig, make_bridge: Callable[..., Bridge]
) -> None:
    """After a commit only the cook states are built again (``payloads.cook_states``): what
    reaches the broker is what a bridge that built the devices with that estimate holds."""
    later = dataclasses.replace(COOKING, progress=80.0, minutes_left=150.0, state="cooking")
    target = {(SIGNALS, 1): Measurement(203.0, Unit.FAHRENHEIT)}

    def namespace(suffix: str) -> MqttConfig:
        return dataclasses.replace(
            mqtt_config,
            instance_id=mqtt_config.instance_id + suffix,
            base_topic=mqtt_config.base_topic + suffix,
            discovery_prefix=mqtt_config.discovery_prefix + suffix,
        )

    step, whole = make_bridge(namespace("s")), make_bridge(namespace("w"))
    step.publisher.publish_alerts(alert_views(target, set()))
    publish_all(step)
    step.publisher.publish_cook({SIGNALS: (COOKING,)})  # estimates after two commits
    step.publisher.publish_cook({SIGNALS: (later,)})
    whole.publisher.publish_alerts(alert_views(target, set()))
    whole.publisher.publish_cook({SIGNALS: (later,)})
    publish_all(whole)
    states: list[dict[str, bytes]] = []
    try:
        for bridge in (step, whole):
            assert bridge.client.flush(WAIT)
            held = wait_retained(mqtt_broker, bridge.publisher.config, _expected(bridge))
            root = bridge.naming.root + "/"  # the states (the configs name the instance)
            states.append({t.removeprefix(root): p for t, p in held.items() if t.startswith(root)})
    finally:
        for bridge in (step, whole):
            clear_retained(mqtt_broker.host, mqtt_broker.port, *namespaces(bridge.publisher.config))
    assert states[0] == states[1]
    probe = json.loads(states[0]["device/10_06_1C_6F_47_70/probe/1"])
    assert (probe["cook_state"], probe["progress"]) == ("cooking", 80.0)


def test_two_instances_side_by_side(
    mqtt_broker: Broker,
    mqtt_config: MqttConfig,
    make_bridge: Callable[..., Bridge],
) -> None:
    """Same broker, same base topic and prefix, same devices: nothing collides."""
    other_config = dataclasses.replace(mqtt_config, instance_id=mqtt_config.instance_id + "b")
    one, two = make_bridge(mqtt_config), make_bridge(other_config)
    assert one.client.client_id != two.client.client_id
    for bridge in (one, two):
        publish_all(bridge)
        assert bridge.client.flush(WAIT)
    want = _expected(one) | _expected(two)
    assert len(want) == len(_expected(one)) + len(_expected(two))
    held = wait_retained(mqtt_broker, mqtt_config, want)
    problems = ha_rules.all_problems(
        [(t, p.decode()) for t, p in held.items()], mqtt_config.discovery_prefix
    )
    assert problems == []  # unique ids unique across both
    # neither kicked the other off (a shared client id reconnects in a loop)
    assert one.client.health().connects == two.client.health().connects == 1


# ---------------------------------------------------------------------------- cleanup


def test_cleanup_removes_everything_this_instance_published(
    mqtt_broker: Broker,
    mqtt_config: MqttConfig,
    database: Database,
    db_url: str,
    tmp_path: Path,
    make_bridge: Callable[..., Bridge],
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = PublicationStore(database, mqtt_config.instance_id)
    bridge = make_bridge(mqtt_config, store=store)
    publish_all(bridge)
    assert bridge.client.flush(WAIT)
    held = wait_retained(mqtt_broker, mqtt_config, _expected(bridge))
    # A neighbour instance on the same prefix must survive the cleanup.
    neighbour_config = dataclasses.replace(mqtt_config, instance_id=mqtt_config.instance_id + "n")
    neighbour = make_bridge(neighbour_config)
    neighbour.publisher.publish_bridge_state(BRIDGE)
    assert neighbour.client.flush(WAIT)
    neighbour.client.stop()
    neighbour_held = {
        t: p
        for t, p in retained(mqtt_broker.host, mqtt_broker.port, *namespaces(mqtt_config)).items()
        if t not in held
    }
    assert len(neighbour_held) == 14  # 11 configs (bridge 10, account 1), 2 states, status

    config_file = tmp_path / "config.yaml"
    mqtt_section = {
        k: getattr(mqtt_config, k)
        for k in ("host", "port", "instance_id", "base_topic", "discovery_prefix")
    }
    config_file.write_text(yaml.safe_dump({"database": {"url": db_url}, "mqtt": mqtt_section}))
    args = ["--config", str(config_file), "mqtt", "cleanup"]

    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{len(held)} retained topics" in out and "dry run: nothing cleared" in out
    assert (
        retained(mqtt_broker.host, mqtt_broker.port, *namespaces(mqtt_config)).keys() >= held.keys()
    )

    assert main(args) == 2  # the bridge is running: it would publish everything again
    assert "looks online" in capsys.readouterr().err

    bridge.client.stop()
    assert main(args) == 0
    assert f"cleared {len(held)} retained topics" in capsys.readouterr().out
    left = retained(mqtt_broker.host, mqtt_broker.port, *namespaces(mqtt_config))
    assert left == neighbour_held
    assert store.load() == []


def test_cleanup_clears_more_than_the_broker_sends_at_once(
    tmp_path: Path,
    instance_id: str,
    private_broker: Callable[..., PrivateBroker],
    make_bridge: Callable[..., Bridge],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A broker drops what overflows its queue for a slow subscriber (the end marker too):
    the scan says it is incomplete, and the cleanup scans again until nothing is left."""
    broker = private_broker(extra="allow_anonymous true\nmax_queued_messages 10\n")
    config = make_mqtt_config(broker.broker, instance_id)
    bridge = make_bridge(config)
    big = "x" * 2048  # more than the socket buffers hold: the broker has to queue
    for i in range(3000):
        bridge.client.publish_state(f"{bridge.naming.root}/big/{i}", big)
    assert bridge.client.flush(WAIT)
    bridge.client.stop()
    scan = read_retained(
        config,
        [f"{bridge.naming.root}/#"],
        marker_topic=f"{bridge.naming.root}/marker",
        client_id=f"{instance_id}-scan",
        quiet=0.5,
    )
    assert not scan.complete and 0 < len(scan.messages) < 3000

    config_file = tmp_path / "config.yaml"
    mqtt_section = {k: getattr(config, k) for k in ("host", "port", "instance_id", "base_topic")}
    config_file.write_text(yaml.safe_dump({"mqtt": mqtt_section}))
    args = ["--config", str(config_file), "mqtt", "cleanup", "--broker-only"]
    assert main([*args, "--dry-run"]) == 0
    assert "only part of what it holds" in capsys.readouterr().out
    assert main(args) == 0
    assert "cleared 3001 retained topics" in capsys.readouterr().out  # and the status
    assert retained(broker.host, broker.port, f"{bridge.naming.root}/#") == {}


def stall_broker(bridge: Bridge, config: MqttConfig, tcp_proxy: TcpProxy) -> None:
    """The broker reads nothing more (a connected but stalled broker): large fillers are
    published until the socket buffers are full and the client's outbox holds states."""
    tcp_proxy.hold_requests()
    filler = b"x" * 200_000
    deadline = time.monotonic() + WAIT
    n = 0
    while bridge.client.health().queued_states < 5 and time.monotonic() < deadline:
        bridge.client.publish_state(f"{config.base_topic}/filler/{n % 10}", filler)
        n += 1
        time.sleep(0.001)  # lets the I/O thread fill the socket: nothing to wait on


def test_what_the_full_outbox_dropped_is_sent_again(
    mqtt_broker: Broker,
    mqtt_config: MqttConfig,
    tcp_proxy: TcpProxy,
    make_bridge: Callable[..., Bridge],
) -> None:
    """A discovery burst larger than the client's outbox (mqtt.max_queue) while the broker
    is slow drops the oldest retained topics, discovery configs among them: the publisher
    sends the dropped ones again at its next refresh, so Home Assistant gets every entity
    (a reconnect would resend them, a slow broker does not)."""
    proxied = make_mqtt_config(tcp_proxy.broker, mqtt_config.instance_id)
    config = dataclasses.replace(proxied, max_queue=100)
    bridge = make_bridge(config)
    stall_broker(bridge, config, tcp_proxy)
    h = bridge.client.health()
    assert h.queued_states >= 5 and h.states_dropped == 0, h  # the client waits on the socket
    # 225 topics behind a full window, not held back (the outbox was below half full when
    # they came): the oldest are dropped
    publish_all(bridge)
    want = {t: p.encode() for t, p in bridge.publisher.retained().items()}
    assert bridge.client.health().states_dropped > 0
    tcp_proxy.restore()
    for _ in range(len(want) // 100 + 2):  # each refresh sends what the last one dropped
        assert bridge.client.flush(WAIT)
        bridge.publisher.refresh(NOW)
    assert bridge.client.flush(WAIT)
    held = retained(mqtt_broker.host, mqtt_broker.port, *namespaces(config))
    missing = sorted(set(want) - set(held))
    assert not missing, f"{len(missing)} never published, e.g. {missing[:3]}"
    assert {t: held[t] for t in want} == want


def account_devices(n: int) -> tuple[Device, ...]:
    """The sample Signals (79 topics) under a serial of account ``n``'s own."""
    signals = sample_devices(NOW)[0]
    probes = tuple(dataclasses.replace(p, serial=f"{p.serial}-{n}") for p in signals.probes)
    return (dataclasses.replace(signals, serial=f"{signals.serial}-{n}", probes=probes),)


def test_a_start_s_discovery_is_paced_so_nothing_is_dropped(
    mqtt_broker: Broker,
    mqtt_config: MqttConfig,
    tcp_proxy: TcpProxy,
    make_bridge: Callable[..., Bridge],
) -> None:
    """At a start every account's discovery comes at once, many times mqtt.max_queue: the
    publisher sends it account by account while the slow broker takes it (waiting on the
    client's outbox), so nothing is dropped and every config reaches the broker with no
    refresh to send it again."""
    proxied = make_mqtt_config(tcp_proxy.broker, mqtt_config.instance_id)
    config = dataclasses.replace(proxied, max_queue=200)  # an account's 79 topics fit
    bridge = make_bridge(config)
    stall_broker(bridge, config, tcp_proxy)
    assert bridge.client.health().states_dropped == 0
    with Subscriber(
        mqtt_broker.host, mqtt_broker.port, f"{config.discovery_prefix}/#", qos=0
    ) as sub:
        tcp_proxy.throttle(5_000_000)  # then the broker takes ~5,000 configs a second
        tcp_proxy.restore()
        for n in range(1, 41):  # 3,160 topics, 16 times the outbox
            bridge.publisher.publish_devices(n, account_devices(n), now=NOW)
        want = {t: p.encode() for t, p in bridge.publisher.retained().items() if "/config" in t}
        assert len(want) > 10 * config.max_queue
        assert bridge.client.flush(WAIT)
        assert bridge.client.health().states_dropped == 0
        sub.sync()
        got = {m.topic: m.payload for m in sub.snapshot()}
    missing = sorted(set(want) - set(got))
    assert not missing, f"{len(missing)} never published, e.g. {missing[:3]}"
    assert {t: got[t] for t in want} == want
