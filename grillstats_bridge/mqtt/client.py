"""MQTT transport on paho-mqtt 2.x: will, reconnect with capped back-off, bounded outbox, TLS,
command subscriptions. Knows nothing of Home Assistant.

One I/O thread per client does all the network work: it selects on the broker's
socket and on a wake-up socket, and drives paho through its external-loop API
(``loop_read``, ``loop_write``, ``loop_misc``). Publishing from any thread only puts
the message in the outbox and wakes that thread. So what reaches the broker is in
the order it was asked for, nothing is handed to paho while the connection is down
(paho would queue it without bound and flush a stale backlog), a full socket holds
messages back in the outbox (where the latest value still wins) instead of in
paho, and no message costs a hand-off between threads.

Two kinds of outgoing message:

* **states** (:meth:`MqttClient.publish_state`): the latest value per topic wins;
  while the broker is away at most ``max_queue`` topics wait, the oldest going
  first when that overflows (counted and logged).
* **events** (:meth:`MqttClient.publish_event`): every one matters, in order,
  QoS 1, never retained. At most ``max_events`` wait; beyond that a new event is
  refused (counted, logged as an error) and its :class:`Delivery` says so, so the
  caller can keep it (the alerts work keeps it in its database outbox).

Each connection is a fresh paho client: paho re-sends a dropped connection's
unacknowledged QoS 1 messages after ``on_connect``, which would put stale retained
configs on the broker after fresh ones. We track those messages ourselves instead
and give them back to the outbox (events in order, states unless a newer value
waits). On every connect the order is: ``online`` on the status topic, the connect
hooks' messages (discovery, then current states), the waiting states, the waiting
events.

Callbacks from paho never raise (each is wrapped and logs), and subscription
handlers run on a dispatcher thread of their own so a slow or failing handler can
neither kill nor stall the I/O thread.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

from grillstats_bridge.config import MqttConfig
from grillstats_bridge.domain import utcnow
from grillstats_bridge.mqtt.connection import (
    CONNECT_TIMEOUT,
    _check_topic,
    _Connection,
    _describe,
    _Event,
    _Goodbye,
    _Inflight,
    _ssl_context,
    _State,
)
from grillstats_bridge.mqtt.messages import (
    ONLINE,
    ConnectHook,
    Delivery,
    DeliveryStatus,
    Handler,
    InboundMessage,
    Message,
    MqttError,
    MqttHealth,
    Payload,
)

log = logging.getLogger(__name__)

# Incoming messages waiting for their handlers, at most so many and so many bytes (topics
# and payloads); beyond that they are dropped (and counted): a flood, or one huge message,
# cannot take the bridge's memory.
MAX_INBOUND = 1000
MAX_INBOUND_BYTES = 1024 * 1024
# Messages handed to paho per pass of the I/O loop, so reads and pings never wait long.
BATCH = 500
# Longest sleep of the I/O loop: paho's keep-alive is checked at least this often.
TICK = 1.0


class MqttClient:
    """A long-lived MQTT client: start it once, publish from any thread, stop it at the end.

    ``status_topic`` carries this client's availability: the will ``offline``
    (retained, QoS 1), ``online`` (retained) on every connect and ``offline``
    before a clean disconnect. None: no availability (short-lived tools).
    """

    def __init__(
        self,
        config: MqttConfig,
        *,
        status_topic: str | None,
        client_id: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        config.validate()
        if config.password and not config.username:
            # MQTT 3.1.1 has no password without a user name; paho would drop it silently.
            raise MqttError("mqtt.password: needs mqtt.username")
        self.config = config
        self.status_topic = status_topic
        self.client_id = client_id or config.effective_client_id
        self.broker = f"{config.host}:{config.port}"
        self.ssl_context = _ssl_context(config) if config.tls else None
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._state = _State.NEW
        self._stopping = False
        self._stop_deadline = 0.0
        self._busy = False  # the I/O thread holds a batch it has not handed over yet
        self._room: tuple[int, Callable[[], None]] | None = None  # set_room_hook's
        self._conn: _Connection | None = None
        self._ready = False  # connected and the on-connect flush handed over
        self._states: collections.OrderedDict[str, Message] = collections.OrderedDict()
        self._events: collections.deque[_Event] = collections.deque()
        self._seq = itertools.count()
        self._hooks: list[ConnectHook] = []
        self._subscriptions: dict[str, tuple[int, Handler]] = {}
        self._inbound: collections.deque[InboundMessage] = collections.deque()
        self._inbound_bytes = 0
        self._inbound_full = False  # dropping: said once, until the queue has room again
        self._stop_event = threading.Event()  # interrupts the back-off wait on stop
        # The I/O thread sleeps in select(); a byte on this pair wakes it for new work.
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._wake_armed = False
        self._sub_changes: list[tuple[str, int]] = []  # (topic, qos); qos -1: unsubscribe
        self._threads: list[threading.Thread] = []
        # health
        self._connected_since: datetime | None = None
        self._last_publish: datetime | None = None
        self._last_error: str | None = None
        self._connects = 0
        self._states_dropped = 0
        self._dropped: set[str] = set()  # retained topics dropped while full: sent again later
        self._events_rejected = 0
        self._inbound_dropped = 0
        self._handler_errors = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start connecting in the background (returns at once; the broker may be away)."""
        with self._lock:
            if self._state is not _State.NEW:
                raise MqttError("the MQTT client was already started")
            self._state = _State.CONNECTING
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
        for name, target in (("mqtt", self._run), ("mqtt-dispatch", self._dispatch)):
            thread = threading.Thread(target=target, name=f"{name}-{self.client_id}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Flush what waits (up to ``timeout``), say ``offline``, disconnect cleanly.

        Events that did not reach the broker end ``ABANDONED``; their owners keep them.
        """
        with self._cond:
            state = self._state
            if state is _State.STOPPED:
                return
            if state is _State.NEW:
                self._state = _State.STOPPED
                self._abandon_events()
            else:
                self._stopping = True
                self._stop_deadline = time.monotonic() + timeout
                self._cond.notify_all()
        if state is not _State.NEW:
            self._stop_event.set()
            self._poke()
            for thread in self._threads:
                thread.join(timeout + CONNECT_TIMEOUT + 1)
            with self._cond:
                self._state = _State.STOPPED
                self._abandon_events()
                self._cond.notify_all()
        with self._lock:
            wake = (self._wake_r, self._wake_w)
            self._wake_r = self._wake_w = None
        for sock in wake:
            if sock is not None:
                sock.close()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until connected and the on-connect messages were handed over (tests, tools)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._ready or self._stopping, timeout) and (
                self._ready
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until nothing waits and every QoS 1 message is acknowledged; False on timeout."""
        with self._cond:
            return self._cond.wait_for(self._idle, timeout)

    def _idle(self) -> bool:
        conn = self._conn
        return (
            self._ready
            and not self._busy
            and not self._states
            and not self._events
            and (conn is None or (not conn.inflight and not conn.backlog))
        )

    def waiting_states(self) -> int:
        """How many state topics wait in the outbox (at most ``mqtt.max_queue``)."""
        with self._lock:
            return len(self._states)

    def set_room_hook(self, below: int, hook: Callable[[], None]) -> None:
        """Call ``hook`` on the I/O thread after each batch handed to paho that leaves fewer
        than ``below`` states waiting: a publisher sends what it held back (a start's
        discovery, paced so that the outbox never overflows). It may publish; it must
        return quickly."""
        with self._lock:
            self._room = (below, hook)

    def take_dropped(self) -> set[str]:
        """The retained topics whose latest value the full outbox dropped (their publisher
        sends them again: a dropped discovery config would leave HA without the entity)."""
        with self._cond:
            dropped, self._dropped = self._dropped, set()
            return dropped

    @property
    def connected(self) -> bool:
        return self._state is _State.CONNECTED

    # ------------------------------------------------------------------ publishing

    def publish_state(
        self, topic: str, payload: Payload, *, qos: int = 0, retain: bool = True
    ) -> None:
        """Publish a state: only the latest value of a topic is kept while it waits."""
        _check_topic(topic)
        message = Message(topic, payload, qos, retain)
        with self._cond:
            self._states.pop(topic, None)  # a newer value goes to the back of the line
            self._states[topic] = message
            self._dropped.discard(topic)
            dropped = None
            if len(self._states) > self.config.max_queue:
                dropped, oldest = self._states.popitem(last=False)
                self._states_dropped += 1
                if oldest.retain and oldest.payload:
                    self._dropped.add(dropped)
            poke = not self._wake_armed
            self._wake_armed = True
        if poke:
            self._poke()
        if dropped is not None and (self._states_dropped == 1 or self._states_dropped % 1000 == 0):
            log.warning(
                "MQTT outbox full (%d state topics): dropped the oldest (%s); %d dropped so far",
                self.config.max_queue,
                dropped,
                self._states_dropped,
            )

    def publish_states(self, messages: Iterable[Message]) -> None:
        """Publish several states in order (each with its own QoS and retain flag)."""
        for m in messages:
            self.publish_state(m.topic, m.payload, qos=m.qos, retain=m.retain)

    def clear(self, topic: str) -> None:
        """Remove a retained message: an empty retained payload, QoS 1."""
        self.publish_state(topic, b"", qos=1, retain=True)

    def publish_event(
        self,
        topic: str,
        payload: Payload,
        *,
        on_done: Callable[[Delivery], None] | None = None,
    ) -> Delivery:
        """Publish an event (QoS 1, not retained); see :class:`Delivery` for what became of it."""
        _check_topic(topic)
        delivery = Delivery(Message(topic, payload, 1, False), on_done)
        with self._cond:
            conn = self._conn
            waiting = len(self._events) + (len(conn.inflight) if conn is not None else 0)
            if self._stopping or self._state is _State.STOPPED:
                refused = "the MQTT client is stopping"
            elif waiting >= self.config.max_events:
                self._events_rejected += 1
                refused = f"{waiting} events already wait (max_events)"
            else:
                refused = ""
                self._events.append(_Event(delivery.message, delivery, next(self._seq)))
            poke = not refused and not self._wake_armed
            self._wake_armed = self._wake_armed or poke
        if poke:
            self._poke()
        if refused:
            log.error(
                "MQTT event to %s REFUSED: %s; %d refused so far, the caller keeps it",
                topic,
                refused,
                self._events_rejected,
            )
            delivery._set(DeliveryStatus.REJECTED)
        return delivery

    def add_connect_hook(self, hook: ConnectHook) -> None:
        """Messages to send on every connect, after ``online`` and before waiting states.

        The hook runs on the client's thread and returns the current value of what it
        names (so a waiting state for one of its topics is superseded and dropped). It
        must not call back into this client.
        """
        with self._lock:
            self._hooks.append(hook)

    # ------------------------------------------------------------------ subscribing

    def subscribe(self, topic: str, handler: Handler, *, qos: int = 1) -> None:
        """Call ``handler`` for each message on ``topic`` (a filter); renewed on every connect.

        Handlers run on the dispatcher thread, one at a time; an exception is logged.
        """
        with self._lock:
            self._subscriptions[topic] = (qos, handler)
            self._sub_changes.append((topic, qos))  # paho is only ever called from the I/O thread
        self._poke()

    def unsubscribe(self, topic: str) -> None:
        with self._lock:
            self._subscriptions.pop(topic, None)
            self._sub_changes.append((topic, -1))
        self._poke()

    def _subscription_list(self) -> list[tuple[str, int]]:
        """Every subscription, for a new connection (which makes pending changes moot)."""
        with self._lock:
            self._sub_changes.clear()
            return [(topic, qos) for topic, (qos, _) in self._subscriptions.items()]

    def _has_waiting(self) -> bool:
        with self._lock:
            return bool(self._states or self._events)

    # ------------------------------------------------------------------ health

    def health(self) -> MqttHealth:
        with self._lock:
            conn = self._conn
            return MqttHealth(
                broker=self.broker,
                client_id=self.client_id,
                connected=self._state is _State.CONNECTED,
                state=str(self._state),
                connected_since=self._connected_since,
                last_publish=self._last_publish,
                last_error=self._last_error,
                connects=self._connects,
                queued_states=len(self._states),
                queued_events=len(self._events),
                inflight=len(conn.inflight) if conn is not None else 0,
                states_dropped=self._states_dropped,
                events_rejected=self._events_rejected,
                inbound_dropped=self._inbound_dropped,
                handler_errors=self._handler_errors,
            )

    # ------------------------------------------------------------------ the I/O thread

    def _run(self) -> None:
        delay = self.config.reconnect_min_delay
        failures = 0
        while not self._stopping:
            connected = False
            try:
                connected = self._connection()
            except Exception as exc:  # a bug must not end reconnection
                log.exception("MQTT connection loop failed")
                self._note_error(f"{type(exc).__name__}: {exc}")
            if self._stopping:
                break
            if connected:
                delay = self.config.reconnect_min_delay
                failures = 0
            failures += 1
            wait = delay * self._rng.uniform(0.8, 1.2)  # jitter: bridges restarted together
            level = logging.WARNING if failures in (1, 2) or failures % 10 == 0 else logging.DEBUG
            log.log(
                level,
                "MQTT broker %s: %s; reconnecting in %.2f s",
                self.broker,
                self._last_error or "disconnected",
                wait,
            )
            self._stop_event.wait(wait)
            delay = min(delay * 2, self.config.reconnect_max_delay)
        with self._cond:
            self._state = _State.STOPPED
            self._cond.notify_all()

    def _connection(self) -> bool:
        """One connection from connect to loss (or stop); True if it got connected."""
        conn = _Connection(self)
        with self._cond:
            self._conn = conn
            self._state = _State.CONNECTING
        try:
            try:
                conn.paho.connect(self.config.host, self.config.port, self.config.keepalive)
            except (OSError, ValueError) as exc:
                self._note_error(_describe(exc))
                return False
            return self._serve(conn)
        finally:
            conn.paho.close()
            self._take_back(conn)

    def _serve(self, conn: _Connection) -> bool:
        """The I/O loop of one connection; True if it got connected."""
        client = conn.paho
        wake = self._wake_r
        assert wake is not None  # created by start(), closed only after this thread ends
        connack_deadline = time.monotonic() + CONNECT_TIMEOUT
        goodbye: _Goodbye | None = None
        while True:
            sock = client.socket()
            if sock is None or conn.lost.is_set():
                return conn.result is True
            pending = sock.pending() if hasattr(sock, "pending") else 0  # TLS: already read
            try:
                readable, writable, _ = select.select(
                    [sock, wake],
                    [sock] if client.want_write() else [],
                    [],
                    0 if pending else TICK,
                )
            except (OSError, ValueError) as exc:  # the socket went away under us
                self._note_error(f"connection lost: {exc}")
                return conn.result is True
            if wake in readable:
                with contextlib.suppress(BlockingIOError):
                    wake.recv(4096)
                with self._lock:
                    self._wake_armed = False
            if (
                sock in readable or pending
            ) and client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                continue  # paho called on_disconnect; the top of the loop ends it
            if sock in writable and client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                continue
            if client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                continue  # keep-alive: no PINGRESP in time
            if conn.result is None:
                if time.monotonic() > connack_deadline or self._stopping:
                    self._note_error("no CONNACK from the broker")
                    return False
                continue
            if conn.result is False:
                return False
            self._apply_subscriptions(conn)
            if not self._ready and not self._flush_on_connect(conn):
                continue
            if self._stopping:
                goodbye = goodbye or _Goodbye(self._stop_deadline)
                if goodbye.step(self, conn):
                    return True
                continue
            self._send_some(conn)

    def _flush_on_connect(self, conn: _Connection) -> bool:
        """``online``, then the hooks' messages; the outbox follows in the normal course."""
        hook_messages: list[Message] = []
        with self._lock:
            hooks = list(self._hooks)
        for hook in hooks:
            try:
                hook_messages.extend(hook())
            except Exception:
                log.exception("MQTT connect hook %r failed", hook)
        first: list[Message] = []
        if self.status_topic is not None:
            first.append(Message(self.status_topic, ONLINE, 1, True))
        first.extend(hook_messages)
        covered = {m.topic for m in first}
        with self._cond:
            for topic in covered:  # the hook's current value supersedes a waiting one
                self._states.pop(topic, None)
            self._dropped -= covered  # nor need they be sent again
        for i, message in enumerate(first):
            if not self._hand_over(conn, message, None):
                self._requeue_states(first[i:])
                return False
        with self._cond:
            self._ready = True
            self._last_publish = self._clock() if first else self._last_publish
            self._cond.notify_all()
        log.info("MQTT connected to %s as %s", self.broker, self.client_id)
        return True

    def _send_some(self, conn: _Connection) -> None:
        """Hand waiting messages to paho, a batch at a time, while the socket takes them."""
        if conn.paho.want_write():
            self._set_backlog(conn, True)
            return  # the socket is full: let the outbox absorb (latest state wins there)
        with self._cond:
            states = [
                self._states.popitem(last=False)[1] for _ in range(min(BATCH, len(self._states)))
            ]
            events = [self._events.popleft() for _ in range(min(BATCH, len(self._events)))]
            if states or events:
                self._busy = True
        if not states and not events:
            self._set_backlog(conn, False)
            return
        try:
            self._send(conn, states, events)
            self._call_room_hook()  # still busy: flush() does not end before what it adds
        finally:
            with self._cond:
                self._busy = False
                self._last_publish = self._clock()
                self._cond.notify_all()
            if self._has_waiting():
                self._poke()  # more waits: come straight back after a look at the socket
        self._set_backlog(conn, conn.paho.want_write())

    def _call_room_hook(self) -> None:
        with self._lock:
            room = self._room if self._room and len(self._states) < self._room[0] else None
        if room is not None:
            try:
                room[1]()
            except Exception:
                log.exception("MQTT room hook %r failed", room[1])

    def _set_backlog(self, conn: _Connection, backlog: bool) -> None:
        if conn.backlog != backlog:
            with self._cond:
                conn.backlog = backlog
                self._cond.notify_all()

    def _send(self, conn: _Connection, states: list[Message], events: list[_Event]) -> bool:
        """Hand messages to paho in order; on a lost connection put the rest back."""
        for i, message in enumerate(states):
            if not self._hand_over(conn, message, None):
                self._requeue_states(states[i:])
                self._requeue_events(events)
                return False
        for i, event in enumerate(events):
            if not self._hand_over(conn, event.message, event):
                self._requeue_events(events[i:])
                return False
        return True

    def _hand_over(self, conn: _Connection, message: Message, event: _Event | None) -> bool:
        """Publish one message; QoS 1 ones are tracked until the broker acknowledges them.

        Acknowledgements are only read by this thread's ``loop_read``, so one can never
        arrive before the message is registered here.
        """
        if conn.lost.is_set():
            return False
        info = conn.paho.publish(message.topic, message.payload, message.qos, message.retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            return False
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.error("MQTT publish to %s failed: %s", message.topic, paho.error_string(info.rc))
        if message.qos > 0:
            seq = event.seq if event is not None else -1
            with self._lock:
                conn.inflight[info.mid] = _Inflight(message, event, seq)
            if event is not None:
                event.delivery._set(DeliveryStatus.SENT)
        return True

    def _apply_subscriptions(self, conn: _Connection) -> None:
        with self._lock:
            changes, self._sub_changes = self._sub_changes, []
        for topic, qos in changes:
            if qos < 0:
                conn.paho.unsubscribe(topic)
            else:
                conn.paho.subscribe(topic, qos)

    def _take_back(self, conn: _Connection) -> None:
        """After a connection ends: unacknowledged QoS 1 messages go back to the outbox."""
        with self._cond:
            pending = sorted(conn.inflight.values(), key=lambda i: i.seq)
            conn.inflight.clear()
            conn.backlog = False
            self._ready = False
            if self._state is _State.CONNECTED:
                self._state = _State.DISCONNECTED
            self._connected_since = None
            self._cond.notify_all()
        # ``online`` is said again first thing on the next connect.
        self._requeue_states(
            [p.message for p in pending if p.event is None and p.message.topic != self.status_topic]
        )
        self._requeue_events([p.event for p in pending if p.event is not None])

    def _poke(self) -> None:
        """Wake the I/O thread (once per burst: the flag is cleared when it wakes)."""
        wake = self._wake_w
        if wake is not None:  # None: not started, or stopped
            with contextlib.suppress(OSError):
                wake.send(b"x")

    def _requeue_states(self, messages: list[Message]) -> None:
        with self._lock:
            older = collections.OrderedDict(
                (m.topic, m) for m in messages if m.topic not in self._states
            )
            older.update(self._states)  # a value that waits is newer than one given back
            self._states = older

    def _requeue_events(self, events: list[_Event]) -> None:
        with self._lock:
            for event in reversed(events):
                event.delivery._status = DeliveryStatus.QUEUED
                self._events.appendleft(event)

    def _abandon_events(self) -> None:
        """Called with the lock held when the client has stopped."""
        events = list(self._events)
        self._events.clear()
        if events:
            log.error(
                "MQTT stopped with %d undelivered events; their owners keep them", len(events)
            )
        for event in events:
            event.delivery._set(DeliveryStatus.ABANDONED)

    # ------------------------------------------------------------------ from paho's thread

    def _connect_succeeded(self, conn: _Connection) -> None:
        with self._cond:
            conn.result = True
            self._state = _State.CONNECTED
            self._connected_since = self._clock()
            self._connects += 1
            self._last_error = None
            self._cond.notify_all()

    def _connect_failed(self, conn: _Connection, reason: str) -> None:
        with self._cond:
            conn.result = False
            self._last_error = reason
            self._cond.notify_all()

    def _connection_lost(self, conn: _Connection, reason: str) -> None:
        with self._cond:
            conn.lost.set()
            if conn.result is None:
                conn.result = False
                self._last_error = f"the broker closed the connection before CONNACK ({reason})"
            elif conn.result and not self._stopping:
                self._last_error = f"connection lost: {reason}"
            self._cond.notify_all()

    def _acknowledged(self, conn: _Connection, mid: int) -> None:
        with self._cond:
            item = conn.inflight.pop(mid, None)
            if item is None:
                return  # a QoS 0 message written out: nothing to track
            self._cond.notify_all()
        if item.event is not None:
            item.event.delivery._set(DeliveryStatus.DELIVERED)

    def _received(self, message: InboundMessage) -> None:
        size = _size(message)
        with self._cond:
            held, held_bytes = len(self._inbound), self._inbound_bytes
            if held >= MAX_INBOUND or held_bytes + size > MAX_INBOUND_BYTES:
                self._inbound_dropped += 1
                first, self._inbound_full = not self._inbound_full, True
            else:
                self._inbound.append(message)
                self._inbound_bytes += size
                first = False
                if self._inbound_full and held < MAX_INBOUND // 2:
                    self._inbound_full = False
                self._cond.notify_all()
        if first:
            log.warning(
                "MQTT inbound queue full (%d messages, %d bytes waiting): dropped a message "
                "of %d bytes on %r (and more, unlogged, until there is room)",
                held,
                held_bytes,
                size,
                message.topic[:80],
            )

    def _note_error(self, text: str) -> None:
        with self._lock:
            self._last_error = text

    # ------------------------------------------------------------------ the dispatcher thread

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._inbound or self._state is _State.STOPPED)
                if not self._inbound:
                    return
                message = self._inbound.popleft()
                self._inbound_bytes -= _size(message)
                handlers = [
                    handler
                    for topic, (_, handler) in self._subscriptions.items()
                    if paho.topic_matches_sub(topic, message.topic)
                ]
            for handler in handlers:
                try:
                    handler(message)
                except Exception:
                    with self._lock:
                        self._handler_errors += 1
                    log.exception("MQTT handler for %r failed", message.topic[:80])


def _size(message: InboundMessage) -> int:
    """What an inbound message counts against the queue's bytes: its topic and payload."""
    return len(message.topic) + len(message.payload)
