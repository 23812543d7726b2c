"""An account whose publications did not change is not reconciled again, and nothing is lost."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from grillstats_bridge.config import MqttConfig
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.publications import PublicationStore
from tests.fixtures.mqtt import WAIT, Broker
from tests.sample_devices import sample_devices
from tests.test_publisher import (
    BRIDGE,
    NOW,
    Bridge,
    _expected,
    make_bridge,  # noqa: F401 (the fixture)
    publish_all,
    wait_retained,
)


def test_after_a_restart_an_account_without_devices_clears_what_it_had(
    mqtt_broker: Broker,
    mqtt_config: MqttConfig,
    database: Database,
    make_bridge: Callable[..., Bridge],  # noqa: F811
) -> None:
    first = make_bridge(mqtt_config, store=PublicationStore(database, mqtt_config.instance_id))
    publish_all(first)
    assert first.client.flush(WAIT)
    wait_retained(mqtt_broker, mqtt_config, _expected(first))
    first.client.stop()
    # The account now has no device: its first (empty) publication still clears the old ones.
    second = make_bridge(mqtt_config, store=PublicationStore(database, mqtt_config.instance_id))
    second.publisher.publish_bridge_state(BRIDGE)
    second.publisher.publish_devices(1, [], now=NOW)
    second.publisher.refresh(NOW + timedelta(seconds=30))
    assert second.publisher.save_records()
    assert second.client.flush(WAIT)
    held = wait_retained(mqtt_broker, mqtt_config, _expected(second))
    assert not any("/device/" in topic for topic in held)


def test_a_refresh_after_a_poll_publishes_the_polls_values(
    mqtt_broker: Broker,
    mqtt_config: MqttConfig,
    make_bridge: Callable[..., Bridge],  # noqa: F811
) -> None:
    bridge = make_bridge(mqtt_config)
    publish_all(bridge)
    bridge.publisher.refresh(NOW + timedelta(seconds=5))  # nothing changed: skipped
    before = bridge.publisher.retained()
    moved = sample_devices(NOW + timedelta(seconds=15), step=3)
    bridge.publisher.publish_devices(1, moved, now=NOW + timedelta(seconds=15))
    bridge.publisher.refresh(NOW + timedelta(seconds=20))  # skipped again: the poll's values
    assert bridge.client.flush(WAIT)
    held = wait_retained(mqtt_broker, mqtt_config, _expected(bridge))
    after = bridge.publisher.retained()
    changed = [t for t, payload in after.items() if before.get(t) != payload]
    assert len(changed) >= 5  # the probes moved
    assert all(held[t] == after[t].encode() for t in changed)
