"""What the publisher reuses between polls: unchanged configs, unchanged devices, topic owners."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from grillstats_bridge.config import MqttConfig
from grillstats_bridge.ha.entities import DeviceView
from grillstats_bridge.ha.naming import Naming
from grillstats_bridge.ha.payloads import (
    ConfigMemo,
    Publication,
    bridge_publication,
    device_publication,
)
from grillstats_bridge.ha.publisher import Publisher, naming_for
from grillstats_bridge.mqtt.client import MqttClient
from tests.fixtures.mqtt import WAIT, Subscriber
from tests.sample_devices import SIGNALS, sample_devices
from tests.test_publisher import BRIDGE

NOW = datetime(2026, 11, 27, 18, 30, tzinfo=UTC)
NAMING = Naming(instance_id="memo_test")


def payloads(pubs: Sequence[Publication]) -> list[tuple[str, str]]:
    return [(c.topic, c.json()) for p in pubs for c in p.configs]


def test_memo_builds_the_same_configs_and_reuses_unchanged_ones() -> None:
    memo = ConfigMemo()
    first = [
        device_publication(NAMING, DeviceView.of(d, NOW), memo=memo) for d in sample_devices(NOW)
    ]
    plain = [device_publication(NAMING, DeviceView.of(d, NOW)) for d in sample_devices(NOW)]
    assert payloads(first) == payloads(plain)
    later = NOW + timedelta(seconds=15)
    second = [
        device_publication(NAMING, DeviceView.of(d, later), memo=memo)
        for d in sample_devices(later, step=1)  # new values, the same entities
    ]
    assert all(
        a is b
        for p, q in zip(first, second, strict=True)
        for a, b in zip(p.configs, q.configs, strict=True)
    )
    assert payloads(
        [
            bridge_publication(NAMING, BRIDGE, memo=memo),
            bridge_publication(NAMING, BRIDGE, memo=memo),
        ]
    ) == payloads([bridge_publication(NAMING, BRIDGE)] * 2)


def test_memo_rebuilds_a_config_whose_inputs_changed() -> None:
    memo = ConfigMemo()
    signals = sample_devices(NOW)[0]
    before = device_publication(NAMING, DeviceView.of(signals, NOW), memo=memo)
    relabelled = dataclasses.replace(
        signals, probes=(dataclasses.replace(signals.probes[0], label="Chuck"), *signals.probes[1:])
    )
    after = device_publication(NAMING, DeviceView.of(relabelled, NOW, "My smoker"), memo=memo)
    plain = device_publication(NAMING, DeviceView.of(relabelled, NOW, "My smoker"))
    assert payloads([after]) == payloads([plain])
    assert payloads([after]) != payloads([before])
    assert any('"name":"Chuck"' in c.json() for c in after.configs)


@pytest.fixture
def publisher(mqtt_config: MqttConfig) -> Iterator[Publisher]:
    client = MqttClient(mqtt_config, status_topic=naming_for(mqtt_config).status_topic)
    pub = Publisher(client, mqtt_config, clock=lambda: NOW)
    client.start()
    assert client.wait_ready(WAIT)
    yield pub
    pub.close()
    client.stop(timeout=2)


def test_refresh_republishes_only_what_time_changed(
    publisher: Publisher, ordered_subscriber: Subscriber
) -> None:
    devices = sample_devices(NOW)
    publisher.publish_devices(1, devices, now=NOW)
    assert publisher.client.flush(WAIT)
    ordered_subscriber.wait_for(lambda ms: len(ms) >= len(publisher.records()) - 1)
    ordered_subscriber.sync()
    ordered_subscriber.clear()
    publisher.refresh(NOW + timedelta(seconds=30))  # nothing changed
    publisher.refresh(NOW + timedelta(days=1))  # every device went silent: offline
    assert publisher.client.flush(WAIT)
    ordered_subscriber.sync()
    got = {m.topic: m.text for m in ordered_subscriber.snapshot()}
    root = naming_for(publisher.config).root
    online = [f"{root}/device/{DeviceView.of(d, NOW).sid}" for d in devices if d.is_online(NOW)]
    assert len(online) == 4
    assert set(got) == {*online, *(f"{t}/availability" for t in online)}
    assert all(got[f"{t}/availability"] == "offline" for t in online)
    assert all('"online":false' in got[t] for t in online)


def test_a_device_that_moves_to_another_account_stays_published(
    publisher: Publisher, subscriber: Subscriber
) -> None:
    devices = sample_devices(NOW)
    publisher.publish_devices(1, devices, now=NOW)
    publisher.publish_devices(2, devices[:1], now=NOW)  # the Signals is now account 2's
    publisher.publish_devices(1, devices[1:], now=NOW)  # and no longer account 1's
    assert publisher.client.flush(WAIT)
    subscriber.sync()
    cleared = {m.topic for m in subscriber.snapshot() if not m.payload}
    assert not any(SIGNALS.replace(":", "_") in t for t in cleared)
    owners = {r.owner for r in publisher.records() if SIGNALS.replace(":", "_") in r.topic}
    assert owners == {"user:2"}
    publisher.forget_account(2)  # account 2 unlinked: now the Signals goes
    assert publisher.client.flush(WAIT)
    subscriber.sync()
    cleared = {m.topic for m in subscriber.snapshot() if not m.payload}
    assert any(SIGNALS.replace(":", "_") in t for t in cleared)
    assert not any(SIGNALS.replace(":", "_") in r.topic for r in publisher.records())
