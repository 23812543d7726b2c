"""One broker connection under the client's I/O thread: a fresh paho client per connect,
its in-flight QoS 1 messages, the goodbye at shutdown, TLS and topic checks."""

from __future__ import annotations

import contextlib
import enum
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from grillstats_bridge.config import MqttConfig
from grillstats_bridge.mqtt.messages import OFFLINE, Delivery, InboundMessage, Message, MqttError

if TYPE_CHECKING:
    from grillstats_bridge.mqtt.client import MqttClient

log = logging.getLogger(__name__)


class _ExpectedPahoNoise(logging.Filter):
    """paho logs "Client is not connected" at ERROR when its loop meets a socket we closed
    on purpose (a short-lived client's disconnect and loop_stop race): not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


def paho_logger(name: str) -> logging.Logger:
    """The logger a paho client of ours writes to (its own noise filtered out)."""
    logger = logging.getLogger(f"{name}.paho")
    if not any(isinstance(f, _ExpectedPahoNoise) for f in logger.filters):
        logger.addFilter(_ExpectedPahoNoise())
    return logger


class _State(enum.StrEnum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    STOPPED = "stopped"


@dataclass(slots=True)
class _Event:
    message: Message
    delivery: Delivery
    seq: int


@dataclass(slots=True)
class _Inflight:
    """A QoS 1 message handed to paho and not yet acknowledged."""

    message: Message
    event: _Event | None  # None: a state (discovery config, clear)
    seq: int


class _Paho(paho.Client):
    """paho's client, closing what paho leaves open: the socket of a failed TLS handshake,
    and the wake-up socket pair of ``loop_start`` (closed only when the client is
    garbage-collected, and its thread keeps it in a reference cycle)."""

    # QoS 1 acknowledgements reach ``on_acked`` instead of ``on_publish``: with an
    # ``on_publish`` set, paho builds a ReasonCode and a Properties object for every QoS 0
    # message it writes, to call it with them (~6 % of the bridge's CPU at 100 devices),
    # and a QoS 0 message has nothing to acknowledge. paho hands every PUBACK to
    # ``_do_on_publish`` (in 1.x as in 2.x); tests/test_mqtt.py's delivery tests fail
    # if it stops doing so.
    on_acked: Callable[[int], None] | None = None

    def _do_on_publish(self, mid: int, reason_code: Any, properties: Any) -> Any:
        acked = self.on_acked
        if acked is not None:
            acked(mid)
        return super()._do_on_publish(mid, reason_code, properties)

    def close(self) -> None:
        """Release every socket; call after ``loop_stop``."""
        self._reset_sockets()

    def _ssl_wrap_socket(self, tcp_sock: Any) -> Any:
        context = self._ssl_context
        assert context is not None  # only called when TLS is on
        sock = context.wrap_socket(
            tcp_sock, server_hostname=self._host, do_handshake_on_connect=False
        )
        try:
            sock.settimeout(self._connect_timeout)
            sock.do_handshake()  # the context checks the host name unless tls_insecure
        except BaseException:
            sock.close()
            raise
        return sock


class _Connection:
    """One paho client for one connection attempt; its callbacks report to the owner."""

    def __init__(self, owner: MqttClient) -> None:
        self.owner = owner
        self.result: bool | None = None  # None: no CONNACK yet; False: refused or lost
        self.lost = threading.Event()
        self.inflight: dict[int, _Inflight] = {}
        self.backlog = False  # paho holds bytes the socket did not take yet
        self.paho = self._make_paho()

    def _make_paho(self) -> _Paho:
        owner = self.owner
        cfg = owner.config
        client = _Paho(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=owner.client_id,
            clean_session=True,
            protocol=paho.MQTTv311,
            reconnect_on_failure=False,  # we reconnect ourselves, with a fresh client
        )
        client.enable_logger(paho_logger(__name__))
        client.connect_timeout = CONNECT_TIMEOUT
        client.max_inflight_messages_set(MAX_INFLIGHT)
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password)
        if owner.ssl_context is not None:
            client.tls_set_context(owner.ssl_context)
        if owner.status_topic is not None:
            # Set before every connect: the broker publishes it if we vanish without DISCONNECT.
            client.will_set(owner.status_topic, OFFLINE, qos=1, retain=True)
        client.on_socket_open = _no_delay
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_acked = self._on_acked
        client.on_message = self._on_message
        return client

    # paho calls these on the I/O thread (inside loop_read and loop_write): they must never
    # raise or block.

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        try:
            if reason.is_failure:
                self.owner._connect_failed(self, f"broker refused the connection: {reason}")
                return
            for topic, qos in self.owner._subscription_list():
                client.subscribe(topic, qos)
            self.owner._connect_succeeded(self)
        except Exception:
            log.exception("MQTT on_connect failed")

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        try:
            self.owner._connection_lost(self, str(reason))
        except Exception:
            log.exception("MQTT on_disconnect failed")

    def _on_acked(self, mid: int) -> None:
        try:
            self.owner._acknowledged(self, mid)
        except Exception:
            log.exception("MQTT acknowledgement failed")

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            self.owner._received(
                InboundMessage(
                    topic=msg.topic,
                    payload=bytes(msg.payload),
                    retain=bool(msg.retain),
                    qos=msg.qos,
                )
            )
        except Exception:
            log.exception("MQTT on_message failed")


class _Goodbye:
    """A clean stop, one step per pass of the I/O loop: drain the outbox, wait (bounded)
    for acknowledgements, say ``offline`` (a clean DISCONNECT suppresses the will), and
    disconnect."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.offline: Any = None  # paho's MQTTMessageInfo of the offline message
        self.disconnected = False

    def step(self, owner: MqttClient, conn: _Connection) -> bool:
        """True when the loop should end (paho closes the socket once DISCONNECT is out)."""
        now = time.monotonic()
        late = now > self.deadline
        if self.disconnected:
            return now > self.deadline + 1.0  # DISCONNECT never got out: give up on it
        if self.offline is None:
            if not late and owner._has_waiting():
                owner._send_some(conn)
                return False
            if not late and conn.inflight:
                return False
            if owner.status_topic is not None:
                self.offline = conn.paho.publish(owner.status_topic, OFFLINE, 1, True)
                return False
        elif not late and not self.offline.is_published():
            return False
        conn.paho.disconnect()
        self.disconnected = True
        self.deadline = max(self.deadline, now)
        return False


def _no_delay(client: Any, userdata: Any, sock: Any) -> None:
    """Turn Nagle's algorithm off: paho leaves it on, and a small publish then waits for the
    broker's delayed ACK (40 ms on Linux), which was the whole p99 of poll-to-publish."""
    with contextlib.suppress(OSError, AttributeError):  # not TCP: nothing to turn off
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _check_topic(topic: str) -> None:
    if not topic or "+" in topic or "#" in topic or "\0" in topic:
        raise ValueError(f"not a topic to publish to: {topic!r}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "connection timed out"
    return f"{type(exc).__name__}: {exc.strerror if isinstance(exc, OSError) else exc}"


def _ssl_context(config: MqttConfig) -> ssl.SSLContext:
    """The TLS context, built once so a bad file is an error at start, not at each connect."""
    try:
        context = ssl.create_default_context(cafile=config.tls_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise MqttError(f"mqtt.tls_ca_file: cannot load {config.tls_ca_file}: {exc}") from None
    if config.tls_certfile:
        try:
            context.load_cert_chain(config.tls_certfile, config.tls_keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise MqttError(
                f"mqtt.tls_certfile: cannot load {config.tls_certfile}"
                f"{' / ' + config.tls_keyfile if config.tls_keyfile else ''}: {exc}"
            ) from None
    if config.tls_insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# QoS 1 messages paho may have on the wire at once (its default of 20 slows discovery bursts).
MAX_INFLIGHT = 100


# Seconds a TCP (and TLS) connect may take before the attempt counts as failed.
CONNECT_TIMEOUT = 10.0
