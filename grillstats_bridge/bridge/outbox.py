"""Events that reach the broker at least once: read from the database, marked when acknowledged.

Alert firings (the alert history) and ended sessions wait in their tables until
the broker has acknowledged their QoS 1 message; a broker outage, a restart or a
database hiccup only delays them. One :class:`Outbox` per kind of event; it runs
on the daemon's pipeline thread (``post`` brings the broker's answers back there).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Generic, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from grillstats_bridge.mqtt.client import MqttClient
from grillstats_bridge.mqtt.messages import Delivery
from grillstats_bridge.store.db import Database

log = logging.getLogger(__name__)

BATCH = 100  # events read per drain; more are read once these are out

T = TypeVar("T")
Send = Callable[[T, Callable[[Delivery], None]], object]


class Outbox(Generic[T]):
    """Publishes waiting events in order; each is marked once the broker acknowledged it.

    ``pending(db, limit)`` gives the waiting events as (id, event), oldest first;
    ``send(event, on_done)`` publishes one; ``mark(db, ids, at)`` records them as
    delivered. An event sent but not marked (the database went away) is sent
    again later: consumers tell repeats apart by the id in the payload.
    """

    def __init__(
        self,
        name: str,
        *,
        database: Database,
        client: MqttClient,
        post: Callable[[Callable[[], None]], None],
        clock: Callable[[], datetime],
        pending: Callable[[Session, int], Sequence[tuple[int, T]]],
        send: Send[T],
        mark: Callable[[Session, list[int], datetime], object],
    ) -> None:
        self.name = name
        self.database = database
        self.client = client
        self.post = post
        self.clock = clock
        self._pending = pending
        self._send = send
        self._mark = mark
        self.dirty = True  # the table may hold waiting events
        self._inflight: set[int] = set()

    def drain(self) -> None:
        """Publish what waits (not already in flight), oldest first."""
        if not self.client.connected:
            return
        try:
            with self.database.transaction() as db:
                waiting = [(i, e) for i, e in self._pending(db, BATCH) if i not in self._inflight]
        except SQLAlchemyError as exc:
            log.debug("%s outbox not read: %s", self.name, type(exc).__name__)
            return
        self.dirty = len(waiting) >= BATCH
        for event_id, event in waiting:
            self._inflight.add(event_id)
            self._send(event, self._acknowledger(event_id))

    def on_connect(self) -> None:
        """After every (re)connect (an MQTT thread): what waits goes out again."""
        self.dirty = True
        self.post(self.drain)

    def _acknowledger(self, event_id: int) -> Callable[[Delivery], None]:
        def done(delivery: Delivery) -> None:
            self.post(lambda: self._acknowledge(event_id, delivery.delivered))

        return done

    def _acknowledge(self, event_id: int, delivered: bool) -> None:
        self._inflight.discard(event_id)
        if not delivered:
            self.dirty = True
            return
        try:
            with self.database.transaction() as db:
                self._mark(db, [event_id], self.clock())
        except SQLAlchemyError:
            self.dirty = True  # sent but not marked: sent again later (the id is in it)
