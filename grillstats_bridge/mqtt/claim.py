"""One bridge per instance id: a retained claim, checked before the bridge connects.

Two bridges with one ``mqtt.instance_id`` share a client id, so the broker drops
each whenever the other connects, for ever. A running bridge keeps a retained
claim on ``<root>/bridge/claim`` (its run id and start time) beside its retained
``online`` status, and answers a ping on ``<root>/bridge/ping`` on
``<root>/bridge/alive``. A bridge about to start looks first, under a client id of
its own (so it kicks nobody off): status ``online`` and a claim whose run answers
the ping is a live bridge, and the newcomer refuses to start. A claim that does not
answer is a bridge that died before its will was sent: it is taken over.

The processes of one bridge (``run --processes N``) each keep a claim that carries
a bridge key (``bridge.processes``): the retained claim is the last one's, any
process of that bridge answers for it, and a newcomer with the same key is one of
them and starts. A bridge of one process has no key, so it is refused by any live
claim and refuses any other, as before.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from paho.mqtt.enums import CallbackAPIVersion

from grillstats_bridge.config import MqttConfig
from grillstats_bridge.mqtt.client import MqttClient
from grillstats_bridge.mqtt.connection import _describe, _Paho, _ssl_context, paho_logger
from grillstats_bridge.mqtt.messages import ONLINE, InboundMessage, Message, MqttError

log = logging.getLogger(__name__)

PING_WAIT_S = 3.0  # a live bridge answers within this (its MQTT thread does, not its pipeline)


@dataclass(frozen=True, slots=True)
class Claim:
    """Who runs an instance: a random run id, the process's start time (ISO) and pid.

    ``bridge``: the key shared by the processes of one bridge; "" (and left out of the
    payload) for a bridge of one process.
    """

    run_id: str
    started: str
    pid: int
    bridge: str = ""

    def payload(self) -> bytes:
        data = asdict(self)
        if not self.bridge:
            del data["bridge"]
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def parse(cls, payload: bytes) -> Claim | None:
        try:
            data = json.loads(payload)
            bridge = data.get("bridge", "")
            return cls(str(data["run_id"]), str(data["started"]), int(data["pid"]), str(bridge))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def answers_for(self, claim: Claim) -> bool:
        """This live process speaks for ``claim``: it is its run, or a process of its bridge."""
        return self.run_id == claim.run_id or bool(claim.bridge and self.bridge == claim.bridge)


@dataclass(frozen=True, slots=True)
class ClaimTopics:
    claim: str
    ping: str
    alive: str

    @classmethod
    def under(cls, root: str) -> ClaimTopics:
        return cls(f"{root}/bridge/claim", f"{root}/bridge/ping", f"{root}/bridge/alive")


def live_claim(
    config: MqttConfig, *, status_topic: str, topics: ClaimTopics, timeout: float = PING_WAIT_S
) -> Claim | None:
    """The claim of another bridge that is live on this instance id, or None.

    None too when the broker cannot be reached: the bridge starts and connects when
    it can (a broker that is away must not keep it from storing readings).
    """
    marker = f"{topics.claim}/check-{uuid.uuid4().hex}"
    seen: dict[str, bytes] = {}
    listed, answered = threading.Event(), threading.Event()
    answer: list[Claim] = []
    client = _Paho(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"{config.effective_client_id}-check-{uuid.uuid4().hex[:8]}",
        clean_session=True,
        reconnect_on_failure=False,
    )
    client.enable_logger(paho_logger(__name__))
    client.connect_timeout = timeout
    if config.username:
        client.username_pw_set(config.username, config.password)
    if config.tls:
        client.tls_set_context(_ssl_context(config))

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            listed.set()
        else:
            c.subscribe([(t, 1) for t in (status_topic, topics.claim, topics.alive, marker)])

    def on_subscribe(c: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        c.publish(marker, b"", qos=1)  # it comes back after every retained message

    def on_message(c: Any, userdata: Any, message: Any) -> None:
        if message.topic == marker:
            listed.set()
        elif message.topic == topics.alive:
            claim = Claim.parse(seen.get(topics.claim, b""))
            alive = Claim.parse(message.payload)
            if claim is not None and alive is not None and alive.answers_for(claim):
                answer.append(alive)
                answered.set()
        else:
            seen[message.topic] = message.payload

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(config.host, config.port, config.keepalive)
    except (OSError, ValueError) as exc:
        log.debug("instance claim not checked: %s", _describe(exc))
        return None
    client.loop_start()
    try:
        if not listed.wait(timeout):
            log.debug("instance claim not checked: the broker did not answer in time")
            return None
        claim = Claim.parse(seen.get(topics.claim, b""))
        if seen.get(status_topic) != b"online" or claim is None:
            return None
        client.publish(topics.ping, b"", qos=1)
        if answered.wait(timeout):
            return answer[0]
        log.warning(
            "instance claim of run %s (started %s) is stale: it does not answer; taking over",
            claim.run_id[:8],
            claim.started,
        )
        return None
    finally:
        client.disconnect()
        client.loop_stop()


class InstanceTaken(MqttError):
    """Another live bridge runs this instance id on the broker."""


class InstanceClaim:
    """A bridge's claim on its instance id: checked at start, kept retained, answering pings."""

    def __init__(
        self,
        client: MqttClient,
        config: MqttConfig,
        *,
        root: str,
        status_topic: str,
        started: str,
        bridge: str = "",
    ) -> None:
        self.client = client
        self.config = config
        self.status_topic = status_topic  # the bridge's: with a bridge key, not the client's own
        self.topics = ClaimTopics.under(root)
        self.claim = Claim(uuid.uuid4().hex, started, os.getpid(), bridge)
        client.subscribe(self.topics.ping, self._answer)

    def check(self) -> None:
        """InstanceTaken (one line) when another live bridge runs this instance id."""
        other = live_claim(self.config, status_topic=self.status_topic, topics=self.topics)
        if other is not None and self.claim.bridge and other.bridge == self.claim.bridge:
            log.info("joining the running processes of this bridge (pid %d answered)", other.pid)
        elif other is not None:
            raise InstanceTaken(
                f"another bridge already runs as mqtt.instance_id {self.config.instance_id!r} "
                f"on {self.config.host}:{self.config.port} (pid {other.pid}, started "
                f"{other.started}): stop it, or give this one its own mqtt.instance_id"
            )

    def messages(self) -> list[Message]:
        """What to send on every connect: the claim, retained.

        A process of several first says ``online`` on the bridge's status, which carries
        no will (each process's will is on its own status topic).
        """
        claim = Message(self.topics.claim, self.claim.payload(), 1, True)
        if not self.claim.bridge:
            return [claim]
        return [Message(self.status_topic, ONLINE, 1, True), claim]

    def _answer(self, message: InboundMessage) -> None:
        self.client.publish_state(self.topics.alive, self.claim.payload(), qos=1, retain=False)
