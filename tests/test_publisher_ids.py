"""Two users' devices on one broker never share topics: look-alike serials get their own
ids, and a device whose id is taken anyway is refused instead of alternating states."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from grillstats_bridge.config import MqttConfig
from grillstats_bridge.domain import Device, Probe
from tests.fixtures.mqtt import WAIT, Broker, Received, Subscriber
from tests.test_publisher import (
    BRIDGE,
    NOW,
    Bridge,
    _expected,
    make_bridge,  # noqa: F401 (the fixture)
    wait_retained,
)

pytestmark = pytest.mark.mqtt

MAC = "AA:BB:CC:DD:EE:01"
LOOKALIKE = "AA_BB_CC_DD_EE_01"  # what MAC was written as in topics before


def device(serial: str, label: str, value: float, seen: datetime) -> Device:
    probe = Probe(serial=serial, channel=1, label="Meat", value=value, status="NORMAL")
    return Device(
        serial=serial,
        label=label,
        type="signals",
        model="signals",
        transmit_interval_s=15,
        last_seen=seen,
        probes=(probe,),
    )


def polls(bridge: Bridge, rounds: int, *accounts: tuple[int, str, str]) -> None:
    """``rounds`` polls of each account in turn (user id, serial, label), values moving."""
    for step in range(rounds):
        when = NOW + timedelta(seconds=15 * step)
        for user_id, serial, label in accounts:
            devices = [device(serial, label, 100.0 + step + user_id / 10, when)]
            bridge.publisher.publish_devices(user_id, devices, now=when)
            # Each poll's states reach the broker (the outbox keeps only a topic's latest).
            assert bridge.client.flush(WAIT)


def states_on(messages: list[Received], topic: str) -> list[str]:
    """The device names in the states a device's topic carried, in order."""
    return [m.json()["name"] for m in messages if m.topic == topic]


def test_lookalike_serials_of_two_users_get_two_sets_of_topics(
    mqtt_broker: Broker,
    mqtt_config: MqttConfig,
    ordered_subscriber: Subscriber,
    make_bridge: Callable[..., Bridge],  # noqa: F811
) -> None:
    bridge = make_bridge(mqtt_config)
    bridge.publisher.publish_bridge_state(BRIDGE)
    polls(bridge, 3, (1, MAC, "Alice's Signals"), (2, LOOKALIKE, "Bob's Signals"))
    held = wait_retained(mqtt_broker, mqtt_config, _expected(bridge))
    alice = bridge.naming.device_root(MAC)
    bob = bridge.naming.device_root(LOOKALIKE)
    assert alice.endswith("/device/AA_BB_CC_DD_EE_01")  # the id HA already knows
    assert bob != alice and bob.startswith(alice + "__")
    messages = ordered_subscriber.wait_for(
        lambda ms: len(states_on(ms, alice)) == 3 and len(states_on(ms, bob)) == 3
    )
    # Every state each topic ever carried is its own device's: no alternation.
    assert states_on(messages, alice) == ["Alice's Signals"] * 3
    assert states_on(messages, bob) == ["Bob's Signals"] * 3
    uids = [json.loads(p).get("unique_id") for t, p in held.items() if t.endswith("/config")]
    uids = [u for u in uids if u is not None]
    assert len(uids) == len(set(uids))  # no entity of one is the other's
    prefix = f"{mqtt_config.instance_id}_AA_BB_CC_DD_EE_01"
    assert f"{prefix}_p1_temperature" in uids
    assert f"{bob.rsplit('/', 1)[1]}_p1_temperature" in {u.split("_", 1)[1] for u in uids}


def test_a_second_device_under_a_taken_id_is_refused_with_one_warning(
    mqtt_broker: Broker,
    mqtt_config: MqttConfig,
    ordered_subscriber: Subscriber,
    make_bridge: Callable[..., Bridge],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same serial in two accounts: the one published first keeps the topics."""
    bridge = make_bridge(mqtt_config)
    bridge.publisher.publish_bridge_state(BRIDGE)
    with caplog.at_level(logging.WARNING, logger="grillstats_bridge.ha.publisher"):
        polls(bridge, 3, (1, MAC, "Alice's Signals"), (2, MAC, "Bob's Signals"))
    refused = [r.getMessage() for r in caplog.records if "not published" in r.getMessage()]
    assert refused == [
        f"MQTT: device {MAC} of account 2 not published: its id AA_BB_CC_DD_EE_01 "
        f"is already used by device {MAC} of account 1"
    ]
    wait_retained(mqtt_broker, mqtt_config, _expected(bridge))
    root = bridge.naming.device_root(MAC)
    ordered_subscriber.wait_for(lambda ms: len(states_on(ms, root)) == 3)
    ordered_subscriber.sync()
    assert states_on(ordered_subscriber.snapshot(), root) == ["Alice's Signals"] * 3
    assert all(r.owner == "user:1" for r in bridge.publisher.records() if root in r.topic)
    # Alice's account drops the device: Bob's (as last polled) takes its topics at once.
    bridge.publisher.forget_account(1)
    assert bridge.client.flush(WAIT)
    wait_retained(mqtt_broker, mqtt_config, _expected(bridge))
    assert ordered_subscriber.wait_for(lambda ms: states_on(ms, root)[-1:] == ["Bob's Signals"])
    assert all(r.owner == "user:2" for r in bridge.publisher.records() if root in r.topic)
    ordered_subscriber.sync()
    cleared = [m.topic for m in ordered_subscriber.snapshot() if root in m.topic and not m.payload]
    assert cleared == []  # handed over, never removed from HA in between
