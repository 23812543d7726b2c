"""A status topic shared by several processes: ``online`` while any of them lives.

One MQTT connection has one will, and each process of a bridge spends its main
connection's on its own status topic (its devices' availability). So each process
keeps a second, small connection whose will is ``offline`` on the shared topic (the
bridge's ``<root>/status``): it says ``online`` there on every connect, ``offline``
when it stops cleanly, and the broker says ``offline`` for it when it vanishes. Every
live process listens to the topic and says ``online`` again whenever it reads
``offline``, so the topic settles on ``offline`` exactly when no process is left: the
last to stop or die says it last, with nobody to answer. The price is a blink: when one
of several processes stops or dies, the topic is ``offline`` for one round trip to the
broker before the others answer.
"""

from __future__ import annotations

import logging
import threading

from grillstats_bridge.config import MqttConfig
from grillstats_bridge.mqtt.client import MqttClient
from grillstats_bridge.mqtt.messages import OFFLINE, ONLINE, InboundMessage

log = logging.getLogger(__name__)


class SharedStatus:
    """``online`` on ``topic`` while this process lives, answering another's ``offline``."""

    def __init__(self, config: MqttConfig, *, topic: str, client_id: str) -> None:
        self.topic = topic
        self.client = MqttClient(config, status_topic=topic, client_id=client_id)
        self._stopping = threading.Event()
        self.answered = 0  # how often another process's offline was answered
        self.client.subscribe(topic, self._on_status)

    def start(self) -> None:
        self.client.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Say ``offline``: the processes still live answer ``online`` at once."""
        self._stopping.set()
        self.client.stop(timeout=timeout)

    def _on_status(self, message: InboundMessage) -> None:
        if message.payload != OFFLINE.encode() or self._stopping.is_set():
            return
        self.answered += 1
        log.debug("MQTT: %s said offline by another process; online again", self.topic)
        self.client.publish_state(self.topic, ONLINE, qos=1, retain=True)
