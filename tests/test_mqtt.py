"""The MQTT transport against the real Mosquitto: availability, outbox, reconnects, TLS, auth."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from grillstats_bridge.config import ConfigError, MqttConfig
from grillstats_bridge.mqtt.client import MAX_INBOUND_BYTES, MqttClient
from grillstats_bridge.mqtt.messages import DeliveryStatus, InboundMessage, Message, MqttError
from grillstats_bridge.mqtt.retained import read_retained
from tests.fixtures.mqtt import (
    WAIT,
    Broker,
    PrivateBroker,
    Subscriber,
    TcpProxy,
    free_port,
    make_mqtt_config,
    retained,
)

pytestmark = pytest.mark.mqtt


def status_topic(config: MqttConfig) -> str:
    return f"{config.base_topic}/{config.instance_id}/status"


@pytest.fixture
def make_client() -> Iterator[Callable[..., MqttClient]]:
    """Build clients that are stopped at the end of the test, whatever happens."""
    clients: list[MqttClient] = []

    def make(config: MqttConfig, **kwargs: object) -> MqttClient:
        kwargs.setdefault("status_topic", status_topic(config))
        client = MqttClient(config, **kwargs)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.stop(timeout=2)


def started(client: MqttClient) -> MqttClient:
    client.start()
    # ready: online handed over; flushed: the broker acknowledged it
    assert client.wait_ready(WAIT) and client.flush(WAIT), client.health()
    return client


def wait_disconnected(client: MqttClient) -> None:
    """Paho's thread notices a cut connection on its own: wait for that, not for a time."""
    deadline = time.monotonic() + WAIT
    while client.health().connected:
        assert time.monotonic() < deadline, "the client never noticed the cut"
        time.sleep(0.005)


def test_online_retained_on_connect_offline_on_clean_stop(
    mqtt_broker: Broker, mqtt_config: MqttConfig, make_client: Callable[..., MqttClient]
) -> None:
    topic = status_topic(mqtt_config)
    client = started(make_client(mqtt_config))
    assert retained(mqtt_broker.host, mqtt_broker.port, topic) == {topic: b"online"}
    health = client.health()
    assert health.connected and health.connects == 1
    assert health.client_id == f"grillstats-bridge-{mqtt_config.instance_id}"

    client.stop()
    assert retained(mqtt_broker.host, mqtt_broker.port, topic) == {topic: b"offline"}
    assert not client.health().connected


CHILD = """
import sys, time
from grillstats_bridge.config import MqttConfig
from grillstats_bridge.mqtt.client import MAX_INBOUND_BYTES, MqttClient
config = MqttConfig(host=sys.argv[1], port=int(sys.argv[2]), instance_id=sys.argv[3],
                    base_topic=sys.argv[4])
client = MqttClient(config, status_topic=sys.argv[5])
client.start()
assert client.wait_ready(10)
print("ready", flush=True)
time.sleep(60)
"""


def test_will_says_offline_when_the_process_dies(
    mqtt_broker: Broker, mqtt_config: MqttConfig, subscriber: Subscriber
) -> None:
    topic = status_topic(mqtt_config)
    cfg = mqtt_config
    args = [cfg.host, str(cfg.port), cfg.instance_id, cfg.base_topic, topic]
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            subscriber.wait_for_message(topic, "online")
            child.kill()  # no DISCONNECT: the broker must publish the will
            child.wait(WAIT)
            subscriber.wait_for_message(topic, "offline")
        finally:
            child.kill()
    assert retained(mqtt_broker.host, mqtt_broker.port, topic) == {topic: b"offline"}


def test_states_keep_the_latest_value_and_events_wait_while_the_broker_is_away(
    mqtt_broker: Broker,
    mqtt_config: MqttConfig,
    tcp_proxy: TcpProxy,
    ordered_subscriber: Subscriber,
    make_client: Callable[..., MqttClient],
) -> None:
    """Flush order on reconnect: online, hook messages, latest states, events in order."""
    subscriber = ordered_subscriber
    config = make_mqtt_config(tcp_proxy.broker, mqtt_config.instance_id)
    root = f"{config.base_topic}/{config.instance_id}"
    client = make_client(config)
    hook_calls = []

    def hook() -> list[Message]:
        hook_calls.append(1)
        return [
            Message(f"{root}/config", f"config {len(hook_calls)}", 1, True),
            Message(f"{root}/covered", f"current {len(hook_calls)}", 0, True),
        ]

    client.add_connect_hook(hook)
    started(client)
    subscriber.wait_for_message(f"{root}/config", "config 1")

    tcp_proxy.cut()
    subscriber.wait_for_message(status_topic(config), "offline")  # the will
    wait_disconnected(client)
    subscriber.clear()
    for i in range(3):
        client.publish_state(f"{root}/a", f"a{i}")
        client.publish_state(f"{root}/b", f"b{i}")
    client.publish_state(f"{root}/covered", "stale")  # the hook's current value supersedes it
    deliveries = [client.publish_event(f"{root}/event", f"e{i}") for i in range(5)]
    health = client.health()
    assert not health.connected
    assert (health.queued_states, health.queued_events) == (3, 5)
    assert {d.status for d in deliveries} == {DeliveryStatus.QUEUED}

    tcp_proxy.restore()
    assert all(d.wait(WAIT) for d in deliveries)
    received = subscriber.wait_for(lambda ms: len(ms) >= 10, what="the flush")
    assert [(m.topic.removeprefix(root), m.text) for m in received] == [
        ("/status", "online"),
        ("/config", "config 2"),
        ("/covered", "current 2"),
        ("/a", "a2"),
        ("/b", "b2"),
        *(("/event", f"e{i}") for i in range(5)),
    ]
    assert all(not m.retain for m in received)  # live deliveries carry no retain flag
    assert retained(mqtt_broker.host, mqtt_broker.port, f"{root}/#") == {
        f"{root}/status": b"online",
        f"{root}/config": b"config 2",
        f"{root}/covered": b"current 2",
        f"{root}/a": b"a2",
        f"{root}/b": b"b2",
    }
    assert client.health().connects == 2


def test_unacknowledged_messages_are_sent_again_after_a_reconnect(
    mqtt_broker: Broker,
    mqtt_config: MqttConfig,
    tcp_proxy: TcpProxy,
    ordered_subscriber: Subscriber,
    make_client: Callable[..., MqttClient],
) -> None:
    """QoS 1 is at least once: what the broker never acknowledged is not taken as delivered."""
    config = make_mqtt_config(tcp_proxy.broker, mqtt_config.instance_id)
    root = f"{config.base_topic}/{config.instance_id}"
    client = started(make_client(config))
    client.publish_state(f"{root}/config", "to be cleared", qos=1)
    assert client.flush(WAIT)

    tcp_proxy.hold_replies()  # the broker gets our messages; we never see its PUBACKs
    deliveries = [client.publish_event(f"{root}/event", f"e{i}") for i in range(5)]
    client.clear(f"{root}/config")
    ordered_subscriber.wait_for(
        lambda ms: sum(m.topic == f"{root}/event" for m in ms) == 5, what="five events"
    )
    assert {d.status for d in deliveries} == {DeliveryStatus.SENT}
    assert client.health().inflight == 6 and not client.flush(0.2)

    tcp_proxy.cut()
    wait_disconnected(client)
    tcp_proxy.restore()
    assert all(d.wait(WAIT) for d in deliveries)
    got = ordered_subscriber.wait_for(
        lambda ms: sum(m.topic == f"{root}/event" for m in ms) == 10, what="the events again"
    )
    events = [m.text for m in got if m.topic == f"{root}/event"]
    assert events == [f"e{i}" for i in range(5)] * 2  # sent again, in order
    assert client.flush(WAIT)
    assert retained(mqtt_broker.host, mqtt_broker.port, f"{root}/config") == {}


def test_a_failing_connect_hook_does_not_stop_the_client(
    mqtt_broker: Broker,
    mqtt_config: MqttConfig,
    make_client: Callable[..., MqttClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(mqtt_config)

    def broken() -> list[Message]:
        raise RuntimeError("a hook bug")

    client.add_connect_hook(broken)
    client.add_connect_hook(lambda: [Message(f"{status_topic(mqtt_config)}x", "after", 1, True)])
    started(client)
    topic = status_topic(mqtt_config)
    assert retained(mqtt_broker.host, mqtt_broker.port, f"{topic}x") == {f"{topic}x": b"after"}
    assert "connect hook" in caplog.text and "a hook bug" in caplog.text


def test_event_overflow_is_refused_loudly_and_the_caller_knows(
    mqtt_config: MqttConfig,
    tcp_proxy: TcpProxy,
    subscriber: Subscriber,
    make_client: Callable[..., MqttClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = make_mqtt_config(tcp_proxy.broker, mqtt_config.instance_id, max_events=10)
    topic = f"{config.base_topic}/{config.instance_id}/event"
    client = started(make_client(config))
    tcp_proxy.cut()
    wait_disconnected(client)
    done: list[DeliveryStatus] = []
    deliveries = [
        client.publish_event(topic, f"e{i}", on_done=lambda d: done.append(d.status))
        for i in range(12)
    ]
    assert [d.status for d in deliveries[10:]] == [DeliveryStatus.REJECTED] * 2
    assert done == [DeliveryStatus.REJECTED] * 2  # told at once, not dropped silently
    assert client.health().events_rejected == 2
    assert "REFUSED" in caplog.text and any(r.levelno == logging.ERROR for r in caplog.records)

    tcp_proxy.restore()
    assert all(d.wait(WAIT) for d in deliveries[:10])
    got = subscriber.wait_for(lambda ms: sum(m.topic == topic for m in ms) >= 10, what="ten events")
    assert [m.text for m in got if m.topic == topic] == [f"e{i}" for i in range(10)]
    assert sorted(done[2:]) == [DeliveryStatus.DELIVERED] * 10


def test_state_overflow_drops_the_oldest_topics_and_counts_them(
    mqtt_config: MqttConfig,
    tcp_proxy: TcpProxy,
    subscriber: Subscriber,
    make_client: Callable[..., MqttClient],
) -> None:
    config = make_mqtt_config(tcp_proxy.broker, mqtt_config.instance_id, max_queue=100)
    root = f"{config.base_topic}/{config.instance_id}"
    client = started(make_client(config))
    assert client.flush(WAIT)
    tcp_proxy.cut()
    wait_disconnected(client)
    subscriber.clear()
    for i in range(105):
        client.publish_state(f"{root}/s/{i}", str(i))
    health = client.health()
    assert (health.queued_states, health.states_dropped) == (100, 5)
    tcp_proxy.restore()
    got = subscriber.wait_for(
        lambda ms: any(m.topic == f"{root}/s/104" for m in ms), what="the last state"
    )
    # one connection delivers in order: s/104 came last, so s/0..4 would be here by now
    assert [m.topic for m in got if "/s/" in m.topic] == [f"{root}/s/{i}" for i in range(5, 105)]


def test_subscriptions_come_back_after_reconnect_and_handler_errors_are_contained(
    mqtt_config: MqttConfig,
    tcp_proxy: TcpProxy,
    subscriber: Subscriber,
    make_client: Callable[..., MqttClient],
) -> None:
    config = make_mqtt_config(tcp_proxy.broker, mqtt_config.instance_id)
    command = f"{config.base_topic}/{config.instance_id}/cmd"
    seen: list[str] = []
    arrived = threading.Condition()

    def handler(message: InboundMessage) -> None:
        with arrived:
            seen.append(message.text())
            arrived.notify_all()
        if message.text() == "boom":
            raise RuntimeError("a handler bug")

    client = make_client(config)
    client.subscribe(f"{command}/+", handler)
    started(client)

    def send_and_wait(text: str) -> None:
        # the subscription is renewed asynchronously after CONNACK: retry until it takes
        deadline = time.monotonic() + WAIT
        with arrived:
            while text not in seen:
                assert time.monotonic() < deadline, f"handler never saw {text!r}"
                subscriber._client.publish(f"{command}/x", text, qos=1)
                arrived.wait(0.2)

    send_and_wait("boom")
    send_and_wait("after the error")
    tcp_proxy.cut()
    wait_disconnected(client)
    tcp_proxy.restore()
    assert client.wait_ready(WAIT)
    send_and_wait("after reconnect")
    assert client.health().handler_errors == 1


def test_the_inbound_queue_is_bounded_in_bytes(
    mqtt_config: MqttConfig,
    subscriber: Subscriber,
    make_client: Callable[..., MqttClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stuck handler and big messages: what waits stays under the byte limit, one warning."""
    command = f"{mqtt_config.base_topic}/{mqtt_config.instance_id}/cmd"
    seen: list[int] = []
    entered, release = threading.Event(), threading.Event()

    def handler(message: InboundMessage) -> None:
        entered.set()
        release.wait(WAIT)
        seen.append(len(message.payload))

    client = make_client(mqtt_config)
    client.subscribe(command, handler)
    started(client)
    assert client.flush(WAIT)
    deadline = time.monotonic() + WAIT
    while not entered.is_set():  # the subscription is renewed after CONNACK: retry until it takes
        assert time.monotonic() < deadline, "the handler never ran"
        subscriber._client.publish(command, b"first", qos=1).wait_for_publish(WAIT)
        entered.wait(0.2)
    big = MAX_INBOUND_BYTES // 3  # three of them, with their topics, do not fit
    with caplog.at_level(logging.WARNING, logger="grillstats_bridge.mqtt.client"):
        for _ in range(5):
            subscriber._client.publish(command, b"x" * big, qos=1).wait_for_publish(WAIT)
        subscriber._client.publish(command, b"y" * (5 * MAX_INBOUND_BYTES), qos=1)
        subscriber.sync()
        while client.health().inbound_dropped < 4:
            assert time.monotonic() < deadline + WAIT, client.health()
            time.sleep(0.01)  # the broker is still delivering: nothing to wait on
    release.set()
    client.stop(timeout=2)
    assert client.health().inbound_dropped == 4  # 3 big ones and the huge one
    assert seen.count(big) == 2  # what fitted, in order, once the handler was free
    full = [r.getMessage() for r in caplog.records if "inbound queue full" in r.getMessage()]
    assert len(full) == 1 and len(full[0]) < 300  # one line, no payload in it


def test_reconnect_back_off_doubles_up_to_the_cap(
    mqtt_config: MqttConfig,
    make_client: Callable[..., MqttClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed = Broker("127.0.0.1", free_port())
    config = make_mqtt_config(
        closed, mqtt_config.instance_id, reconnect_min_delay=0.01, reconnect_max_delay=0.04
    )
    caplog.set_level(logging.DEBUG, logger="grillstats_bridge.mqtt.client")
    client = make_client(config)
    client.start()

    def waits() -> list[float]:
        return [
            float(r.getMessage().rsplit(" in ", 1)[1].split()[0])
            for r in caplog.records
            if "reconnecting in" in r.getMessage()
        ]

    deadline = time.monotonic() + WAIT
    while len(waits()) < 6:
        assert time.monotonic() < deadline, caplog.text
        time.sleep(0.01)
    got = waits()[:6]
    # 0.01, 0.02, 0.04 (the cap), 0.04...; each +-20% jitter, logged to 0.01 s
    assert got[0] <= 0.015 and got[1] <= 0.03, got
    assert all(0.03 <= w <= 0.05 for w in got[3:]), got
    assert client.health().last_error == "connection refused"
    assert not client.health().connected


def test_publishing_after_stop_is_refused_and_undelivered_events_are_abandoned(
    mqtt_config: MqttConfig, make_client: Callable[..., MqttClient]
) -> None:
    closed = Broker("127.0.0.1", free_port())
    client = make_client(make_mqtt_config(closed, mqtt_config.instance_id))
    client.start()
    waiting = client.publish_event("gstest/never", "e")
    client.stop(timeout=0.5)
    assert waiting.status is DeliveryStatus.ABANDONED and not waiting.wait(0)
    assert client.publish_event("gstest/never", "e").status is DeliveryStatus.REJECTED


def test_reading_what_is_retained_sees_more_than_the_brokers_queue(
    mqtt_config: MqttConfig, make_client: Callable[..., MqttClient]
) -> None:
    """``mqtt cleanup`` must find every topic: 100 devices retain over 2000 of them, and
    Mosquitto queues at most 1000 QoS 1 messages per client (the rest are dropped)."""
    root = f"{mqtt_config.base_topic}/{mqtt_config.instance_id}"
    client = started(make_client(mqtt_config, status_topic=None))
    for i in range(2500):
        client.publish_state(f"{root}/many/{i}", str(i), qos=1)
    assert client.flush(WAIT)
    scan = read_retained(
        mqtt_config,
        [f"{root}/#"],
        marker_topic=f"{root}/marker/x",
        client_id=f"{mqtt_config.instance_id}-scan",
    )
    assert scan.complete and len(scan.messages) == 2500
    assert scan.messages[f"{root}/many/2499"] == b"2499"


def test_bad_topics_and_bad_settings_are_refused(mqtt_config: MqttConfig) -> None:
    client = MqttClient(mqtt_config, status_topic=None)
    for topic in ("", "a/+/b", "a/#"):
        with pytest.raises(ValueError, match="not a topic"):
            client.publish_state(topic, "x")
    with pytest.raises(ConfigError, match=r"mqtt\.instance_id"):
        MqttClient(make_mqtt_config(Broker("h", 1), "has space"), status_topic=None)
    with pytest.raises(ConfigError, match=r"mqtt\.tls_ca_file: set mqtt\.tls"):
        MqttConfig(tls_ca_file="/x").validate()
    with pytest.raises(MqttError, match=r"mqtt\.password: needs mqtt\.username"):
        MqttClient(MqttConfig(password="x"), status_topic=None)
    with pytest.raises(MqttError, match=r"mqtt\.tls_ca_file: cannot load /nonexistent"):
        MqttClient(MqttConfig(tls=True, tls_ca_file="/nonexistent"), status_topic=None)


# ---------------------------------------------------------------- TLS and passwords


def _write_pki(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a stranger CA, as PEM files."""

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = dt.datetime.now(dt.UTC)

    def cert(
        subject: str, subject_key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: object
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(subject_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        if subject == issuer:
            builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                False,
            )
        return builder.sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]

    ca_key, server_key, other_key = key(), key(), key()
    files = {
        "ca": cert("test ca", ca_key, "test ca", ca_key),
        "server": cert("127.0.0.1", server_key, "test ca", ca_key),
        "other_ca": cert("other ca", other_key, "other ca", other_key),
    }
    paths = {}
    for label, c in files.items():
        paths[label] = directory / f"{label}.pem"
        paths[label].write_bytes(c.public_bytes(serialization.Encoding.PEM))
    paths["server_key"] = directory / "server.key"
    paths["server_key"].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def test_tls_verifies_the_broker_certificate(
    tmp_path: Path,
    instance_id: str,
    private_broker: Callable[..., PrivateBroker],
    make_client: Callable[..., MqttClient],
) -> None:
    pki = _write_pki(tmp_path)
    broker = private_broker(
        extra=f"allow_anonymous true\ncertfile {pki['server']}\nkeyfile {pki['server_key']}\n"
    )
    good = make_client(
        make_mqtt_config(broker.broker, instance_id, tls=True, tls_ca_file=str(pki["ca"]))
    )
    started(good)
    topic = status_topic(good.config)
    assert retained(broker.host, broker.port, topic, tls_ca=str(pki["ca"])) == {topic: b"online"}

    stranger = make_client(
        make_mqtt_config(
            broker.broker, instance_id + "x", tls=True, tls_ca_file=str(pki["other_ca"])
        )
    )
    stranger.start()
    _wait_error(stranger, "certificate verification failed")
    assert not stranger.health().connected

    insecure = make_client(
        make_mqtt_config(
            broker.broker,
            instance_id + "y",
            tls=True,
            tls_ca_file=str(pki["other_ca"]),
            tls_insecure=True,
        )
    )
    started(insecure)


def test_username_and_password_and_no_secret_in_logs(
    tmp_path: Path,
    instance_id: str,
    private_broker: Callable[..., PrivateBroker],
    make_client: Callable[..., MqttClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    passwords = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "grill", "s3cret-pw"], check=True
    )
    broker = private_broker(extra=f"allow_anonymous false\npassword_file {passwords}\n")
    caplog.set_level(logging.DEBUG)
    started(
        make_client(
            make_mqtt_config(broker.broker, instance_id, username="grill", password="s3cret-pw")
        )
    )
    wrong = make_client(
        make_mqtt_config(
            broker.broker, instance_id + "x", username="grill", password="wrong-pw-123"
        )
    )
    wrong.start()
    _wait_error(wrong, "refused")
    assert "s3cret-pw" not in caplog.text and "wrong-pw-123" not in caplog.text


def _wait_error(client: MqttClient, text: str) -> None:
    deadline = time.monotonic() + WAIT
    while text not in (client.health().last_error or ""):
        assert time.monotonic() < deadline, client.health()
        time.sleep(0.01)
