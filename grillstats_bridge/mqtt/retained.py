"""Reading what the broker retains under a topic (for ``mqtt clean`` and the checks)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from grillstats_bridge.config import MqttConfig
from grillstats_bridge.mqtt.connection import (
    CONNECT_TIMEOUT,
    _describe,
    _Paho,
    _ssl_context,
    paho_logger,
)
from grillstats_bridge.mqtt.messages import MqttError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetainedScan:
    """What one scan saw retained; ``complete`` when the broker provably sent it all."""

    messages: dict[str, bytes]
    complete: bool


def read_retained(
    config: MqttConfig,
    filters: Iterable[str],
    *,
    marker_topic: str,
    client_id: str,
    timeout: float = 10.0,
    quiet: float = 2.0,
) -> RetainedScan:
    """What the broker holds retained under ``filters`` (one short-lived connection).

    The broker sends retained messages while it handles SUBSCRIBE; a marker we
    publish afterwards on ``marker_topic`` comes back after all of them, so its
    arrival proves the list complete without guessing a quiet period. MQTT has no
    flow control here, though: a broker drops what overflows its queue for a slow
    client (Mosquitto: about 1000 messages beyond what the socket takes, at any QoS),
    the marker too. Then the scan ends after ``quiet`` seconds without a message and
    says it is incomplete; a caller that clears what it found can scan again.
    """
    done = threading.Event()
    failure: list[str] = []
    found: dict[str, bytes] = {}
    lock = threading.Lock()
    progress = {"subscribed": False, "last": time.monotonic()}
    client = _Paho(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True,
        reconnect_on_failure=False,
    )
    client.enable_logger(paho_logger(__name__))
    if config.username:
        client.username_pw_set(config.username, config.password)
    if config.tls:
        client.tls_set_context(_ssl_context(config))
    topics = [*filters, marker_topic]

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            failure.append(f"broker refused the connection: {reason}")
            done.set()
        else:
            # QoS 0: at QoS 1 the broker holds at most max_queued_messages for us (1000
            # in Mosquitto) even when our socket is fast; and at one QoS level the marker
            # stays behind the retained messages.
            c.subscribe([(t, 0) for t in topics])

    def on_subscribe(c: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        with lock:
            progress["subscribed"] = True
            progress["last"] = time.monotonic()
        c.publish(marker_topic, b"end", qos=0)

    def on_message(c: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic == marker_topic:
            done.set()
            return
        with lock:
            progress["last"] = time.monotonic()
            if msg.retain and msg.payload:
                found[msg.topic] = bytes(msg.payload)

    def on_disconnect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not done.is_set():
            failure.append(f"connection lost: {reason}")
            done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    client.connect_timeout = CONNECT_TIMEOUT
    where = f"MQTT broker {config.host}:{config.port}"
    try:
        client.connect(config.host, config.port, config.keepalive)
    except (OSError, ValueError) as exc:
        client.close()
        raise MqttError(f"{where}: {_describe(exc)}") from None
    client.loop_start()
    deadline = time.monotonic() + timeout
    try:
        while not done.wait(0.1):
            with lock:
                subscribed, last = progress["subscribed"], float(progress["last"])
            if subscribed and time.monotonic() - last > quiet:
                break  # the marker was dropped with part of the list
            if not subscribed and time.monotonic() > deadline:
                raise MqttError(f"{where}: no answer in {timeout:g} s")
        if failure:
            raise MqttError(f"{where}: {failure[0]}")
        with lock:
            return RetainedScan(messages=dict(found), complete=done.is_set())
    finally:
        client.disconnect()
        client.loop_stop()
        client.close()
