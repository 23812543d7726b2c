"""What the transport carries and reports: messages, deliveries, health, its error."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from grillstats_bridge.errors import GrillstatsError

log = logging.getLogger(__name__)


ONLINE = "online"


OFFLINE = "offline"


Payload = str | bytes


class MqttError(GrillstatsError):
    """The MQTT client cannot be set up (bad TLS files and the like)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One outgoing message."""

    topic: str
    payload: Payload
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message received on a subscription."""

    topic: str
    payload: bytes
    retain: bool
    qos: int

    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")


Handler = Callable[[InboundMessage], None]


ConnectHook = Callable[[], Iterable[Message]]


class DeliveryStatus(enum.StrEnum):
    """What became of an event."""

    QUEUED = "queued"  # waiting in the outbox (the broker may be away)
    SENT = "sent"  # handed to the connection, no PUBACK yet
    DELIVERED = "delivered"  # the broker acknowledged it (PUBACK)
    REJECTED = "rejected"  # refused: the event queue was full or the client stopped
    ABANDONED = "abandoned"  # the client stopped before the broker acknowledged it

    @property
    def final(self) -> bool:
        return self in (DeliveryStatus.DELIVERED, DeliveryStatus.REJECTED, DeliveryStatus.ABANDONED)


class Delivery:
    """The fate of one event: poll :attr:`status`, :meth:`wait` on it, or pass ``on_done``.

    Only ``DELIVERED`` means the broker has it; on ``REJECTED`` or ``ABANDONED`` the
    caller still owns the event and should keep it for later.
    """

    def __init__(self, message: Message, on_done: Callable[[Delivery], None] | None) -> None:
        self.message = message
        self._status = DeliveryStatus.QUEUED
        self._done = threading.Event()
        self._on_done = on_done

    @property
    def status(self) -> DeliveryStatus:
        return self._status

    @property
    def delivered(self) -> bool:
        return self._status is DeliveryStatus.DELIVERED

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the event's fate is final; True when the broker acknowledged it."""
        self._done.wait(timeout)
        return self.delivered

    def _set(self, status: DeliveryStatus) -> None:
        if self._status.final:
            return
        self._status = status
        if status.final:
            self._done.set()
            if self._on_done is not None:
                try:
                    self._on_done(self)
                except Exception:
                    log.exception("MQTT delivery callback for %s failed", self.message.topic)

    def __repr__(self) -> str:
        return f"<Delivery {self.message.topic} {self._status}>"


@dataclass(frozen=True, kw_only=True, slots=True)
class MqttHealth:
    """The client's state, for ``/health``."""

    broker: str
    client_id: str
    connected: bool
    state: str  # connecting, connected, disconnected, stopped
    connected_since: datetime | None
    last_publish: datetime | None
    last_error: str | None
    connects: int
    queued_states: int
    queued_events: int
    inflight: int
    states_dropped: int
    events_rejected: int
    inbound_dropped: int
    handler_errors: int

    def as_dict(self) -> dict[str, Any]:
        return {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in ((f, getattr(self, f)) for f in self.__slots__)
        }
