"""Publishes the bridge, its linked accounts and their ThermoWorks devices to MQTT and HA.

Uses :mod:`discovery` for what to say and :mod:`mqtt` to say it. It keeps the
current view (the last devices of each account, the bridge's status) so that every
connect and every Home Assistant birth can republish discovery and then the current
states, and it remembers every retained topic it ever published (in memory and in
the ``mqtt_publications`` table) so that what disappears is cleared instead of
lingering as a ghost.

QoS and retain per kind of message:

================================  =====  ======  ==========================================
message                           QoS    retain  why
================================  =====  ======  ==========================================
discovery config                  1      yes     HA must get it, and get it after restarts
clearing a config or state        1      yes     an empty retained payload deletes it
bridge status (online/offline)    1      yes     the will; HA's availability
device availability               1      yes     HA's availability, read on subscribe
device / probe / bridge state     0      yes     frequent; the next poll supersedes a loss,
                                                 and every connect republishes it
events (alerts, sessions)         1      no      HA ignores retained events; never replay
================================  =====  ======  ==========================================
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import NamedTuple, Protocol

from grillstats_bridge.config import MqttConfig
from grillstats_bridge.domain import Device, utcnow
from grillstats_bridge.ha.cook_entities import ProbeCook
from grillstats_bridge.ha.entities import (
    TABLE,
    BridgeHealth,
    BridgeStatus,
    CurrentSession,
    DeviceView,
    JsonValue,
    ProbeAlerts,
    Table,
)
from grillstats_bridge.ha.ids import device_id
from grillstats_bridge.ha.naming import Naming
from grillstats_bridge.ha.payloads import (
    ConfigMemo,
    EntityConfig,
    Publication,
    State,
    bridge_publication,
    config_inputs,
    cook_states,
    device_publication,
    dumps,
    session_state,
    unpack,
)
from grillstats_bridge.mqtt.client import MqttClient
from grillstats_bridge.mqtt.messages import Delivery, InboundMessage, Message

log = logging.getLogger(__name__)

BRIDGE_OWNER = "bridge"
CONFIG_QOS = 1
STATE_QOS = 0
AVAILABILITY_QOS = 1


def naming_for(
    config: MqttConfig, configuration_url: str | None = None, holder_topic: str | None = None
) -> Naming:
    return Naming(
        instance_id=config.instance_id,
        base_topic=config.base_topic,
        discovery_prefix=config.discovery_prefix,
        per_user_topics=config.per_user_topics,
        configuration_url=configuration_url,
        holder_topic=holder_topic,
    )


def account_owner(user_id: int) -> str:
    return f"user:{user_id}"


class Record(NamedTuple):
    """One remembered retained topic (a ``mqtt_publications`` row)."""

    topic: str
    owner: str
    kind: str  # config, state


class RecordStore(Protocol):
    """Where the records are kept between runs (``store.publications.PublicationStore``)."""

    def load(self) -> Sequence[tuple[str, str, str]]: ...

    def apply(self, added: Sequence[tuple[str, str, str]], removed: Sequence[str]) -> None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class PublisherHealth:
    accounts: int
    devices: int
    entities: int  # discovery configs currently published
    retained_topics: int  # everything remembered (what cleanup would clear)
    ha_births: int
    last_discovery: datetime | None
    store_errors: int

    def as_dict(self) -> dict[str, object]:
        return {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in ((f, getattr(self, f)) for f in self.__slots__)
        }


class Publisher:
    """The bridge's MQTT face: discovery, states, availability, cleanup of what vanished.

    Register it before ``client.start()`` (the constructor adds the connect hook and
    the subscription to Home Assistant's birth topic). Every method is thread-safe
    and returns without waiting for the network.
    """

    def __init__(
        self,
        client: MqttClient,
        config: MqttConfig,
        *,
        store: RecordStore | None = None,
        table: Table = TABLE,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        configuration_url: str | None = None,
        holder_topic: str | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.naming = naming_for(config, configuration_url, holder_topic)
        self.store = store
        self.table = table
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.RLock()
        self._bridge: BridgeStatus | None = None
        # Several processes of one instance: one of them writes the bridge's own device.
        self.writes_bridge: Callable[[], bool] = lambda: True
        self._accounts: dict[int, dict[str, tuple[Device, str | None]]] = {}
        # device id -> the (user id, serial) publishing under it; a second one is refused
        self._claims: dict[str, tuple[int, str]] = {}
        # (user id, serial) -> a device refused for a taken id (said once), until it is free
        self._waiting: dict[tuple[int, str], tuple[Device, str | None]] = {}
        self._sessions: dict[str, CurrentSession] = {}  # serial -> its running session
        self._alerts: dict[str, tuple[ProbeAlerts, ...]] = {}  # serial -> its probes' alerts
        self._cook: dict[str, tuple[ProbeCook, ...]] = {}  # serial -> its probes' estimates
        self._configs: dict[str, bytes] = {}  # config topic -> payload last published, packed
        self._states: dict[str, str] = {}  # state topic -> payload last published
        self._records: dict[str, Record] = {}  # every retained topic ever published
        self._owned: dict[str, dict[str, None]] = {}  # owner -> its topics in _records
        self._memo = ConfigMemo()  # discovery configs, rebuilt only when their inputs change
        # user id -> serial -> (device, view, publication) last built for it
        self._built: dict[int, dict[str, tuple[Device, DeviceView, Publication]]] = {}
        # owner -> (its publications' config tuples, its state topics) when last reconciled
        self._shapes: dict[str, tuple[list[tuple[EntityConfig, ...]], list[str]]] = {}
        self._birth_timer: threading.Timer | None = None
        self._ha_births = 0
        self._last_discovery: datetime | None = None
        self._store_errors = 0
        self._store_failing = False
        self._store_lock = threading.Lock()  # one save at a time, in the order of the changes
        self._unsaved: list[tuple[list[Record], list[str]]] = []  # changes not yet in the store
        # Topics held back while the outbox is above its high-water mark, in order: their
        # current value goes out as it drains (_send_deferred).
        self._deferred: dict[str, None] = {}
        self._closed = False
        if store is not None:
            try:
                for row in store.load():
                    record = Record(*row)
                    self._records[record.topic] = record
                    self._owned.setdefault(record.owner, {})[record.topic] = None
            except Exception as exc:
                self._store_failed("load", exc)
        self._remember([Record(self.naming.status_topic, BRIDGE_OWNER, "state")], [])
        client.add_connect_hook(self._on_connect)
        client.set_room_hook(self.high_water, self._send_deferred)
        client.subscribe(self.naming.ha_status_topic, self._on_ha_status, qos=1)

    # ------------------------------------------------------------------ what the daemon calls

    def publish_bridge_state(self, status: BridgeStatus) -> None:
        """The bridge's status, version, last poll, cloud errors and linked accounts."""
        if not self.writes_bridge():
            return
        with self._lock:
            self._bridge = status
            pub = bridge_publication(self.naming, status, self.table, self._memo)
            self._reconcile(BRIDGE_OWNER, [pub], keep={self.naming.status_topic})

    def publish_alerts(self, alerts: Mapping[str, tuple[ProbeAlerts, ...]]) -> None:
        """Every probe's target and alert-active state (serial -> probes); republishes changes."""
        with self._lock:
            fresh = {serial: probes for serial, probes in alerts.items() if probes}
            changed = _changed_keys(self._alerts, fresh)
            if not changed:
                return
            self._alerts = fresh
            now = self._clock()
            for user_id, devices in self._accounts.items():
                if not changed.isdisjoint(devices):
                    self._publish_account(user_id, now)

    def publish_cook(self, cook: Mapping[str, tuple[ProbeCook, ...]]) -> None:
        """Every probe's cook estimate (serial -> probes); the devices that changed republish."""
        with self._lock:
            fresh = {serial: probes for serial, probes in cook.items() if probes}
            changed = _changed_keys(self._cook, fresh)
            if not changed:
                return
            self._cook = fresh
            now = self._clock()
            for user_id, devices in self._accounts.items():
                mine = changed.intersection(devices)
                if mine and not self._publish_cook_states(user_id, mine):
                    self._publish_account(user_id, now)

    def publish_session_event(
        self,
        serial: str,
        payload: Mapping[str, JsonValue],
        *,
        on_done: Callable[[Delivery], None] | None = None,
    ) -> Delivery:
        """One session event (``event_type`` first) on its device's session event topic."""
        topic = self.device_naming(serial).session_event_topic(serial)
        return self.client.publish_event(topic, dumps(dict(payload)), on_done=on_done)

    def device_naming(self, serial: str, user_id: int | None = None) -> Naming:
        """Where a device's topics are: under its owner (``user_id``, else the account that
        publishes it) with ``mqtt.per_user_topics``, else where everyone's are."""
        if user_id is None and self.naming.per_user_topics:
            with self._lock:
                claim = self._claims.get(device_id(serial))
            user_id = claim[0] if claim is not None else None
        return self.naming.for_user(user_id)

    def publish_sessions(self, sessions: Mapping[str, CurrentSession]) -> None:
        """Every running session (by serial); the devices whose session changed republish it."""
        with self._lock:
            changed = _changed_keys(self._sessions, sessions)
            if not changed:
                return
            self._sessions = dict(sessions)
            now = self._clock()
            for user_id, devices in self._accounts.items():
                mine = changed.intersection(devices)
                if mine and not self._publish_session_states(user_id, mine):
                    self._publish_account(user_id, now)

    def _publish_session_states(self, user_id: int, serials: Collection[str]) -> bool:
        """Only the session states of these devices, when nothing else of them changes
        (not when the session's unit moved their configs)."""

        def states(naming: Naming, old: DeviceView, fresh: DeviceView) -> list[State] | None:
            state = session_state(naming, fresh, self.table)
            if state is None or config_inputs(fresh) != config_inputs(old):
                return None
            return [state]

        return self._publish_states_only(
            user_id,
            serials,
            lambda view, serial: replace(view, session=self._sessions.get(serial)),
            states,
        )

    def _publish_cook_states(self, user_id: int, serials: Collection[str]) -> bool:
        """Only the states these devices' new cook estimates move (``payloads.cook_states``):
        after a commit the poll's devices were built moments ago by ``publish_devices``,
        and only their estimates changed since."""

        def states(naming: Naming, old: DeviceView, fresh: DeviceView) -> list[State] | None:
            return cook_states(naming, old, fresh, self.table)

        return self._publish_states_only(
            user_id,
            serials,
            lambda view, serial: replace(view, cook=self._cook.get(serial, ())),
            states,
        )

    def _publish_states_only(
        self,
        user_id: int,
        serials: Collection[str],
        refresh: Callable[[DeviceView, str], DeviceView],
        build: Callable[[Naming, DeviceView, DeviceView], list[State] | None],
    ) -> bool:
        """Some states of these built devices, from their views as ``refresh`` makes them
        (``build``: the states the change moves, None when more than states depends on it),
        instead of their whole publications.

        False (nothing done) when a device is not built yet, ``build`` says None or a
        state is not one the device publishes: then the whole account is republished.
        """
        built = self._built.get(user_id, {})
        naming = self.naming.for_user(user_id)
        updates: list[tuple[str, DeviceView, Publication, list[State]]] = []
        for serial in serials:
            known = built.get(serial)
            if known is None:
                return False
            _, view, pub = known
            fresh = refresh(view, serial)
            states = build(naming, view, fresh)
            if states is None:
                return False
            by_topic = {state.topic: state for state in states}
            if not by_topic.keys() <= {s.topic for s in pub.states}:
                return False
            kept = tuple(by_topic.get(s.topic, s) for s in pub.states)
            updates.append((serial, fresh, replace(pub, states=kept), states))
        for serial, fresh, pub, states in updates:
            built[serial] = (built[serial][0], fresh, pub)
            for state in states:
                self._send_state(state)
        return True

    def _send_state(self, state: State) -> None:
        """Publish a state whose payload differs from the one last published on its topic."""
        if self._states.get(state.topic) != state.payload:
            self._states[state.topic] = state.payload
            self.client.publish_state(
                state.topic, state.payload, qos=_state_qos(state), retain=True
            )

    def publish_devices(
        self,
        user_id: int,
        devices: Sequence[Device],
        *,
        now: datetime | None = None,
        nicknames: Mapping[str, str] | None = None,
    ) -> None:
        """All devices of one account as just polled (``domain.Poll.devices``).

        A device missing from ``devices`` that was published for this account before
        is removed from HA; so is a probe or a kind of entity that disappeared.
        ``nicknames`` (serial -> name) are the user's own names for devices.
        """
        nicknames = nicknames or {}
        with self._lock:
            if self._bridge is None and self.writes_bridge():
                # Devices name the bridge as their via_device: HA must know it first.
                self.publish_bridge_state(BridgeStatus(status=BridgeHealth.STARTING))
            self._accounts[user_id], heirs = self._claim(user_id, devices, nicknames)
            when = now or self._clock()
            for heir in sorted(heirs):  # first: they take the topics this account drops
                self._publish_account(heir, when)
            self._publish_account(user_id, when)

    @property
    def high_water(self) -> int:
        """The outbox's fill (states waiting) from which a discovery burst is held back."""
        return max(self.config.max_queue // 2, 1)

    def _send_deferred(self) -> None:
        """Send the current value of held-back topics while the outbox is below its
        high-water mark (the client calls this as its outbox drains).

        At a start every account's discovery comes at once (40 configs a device, 40,000
        at 1,000 devices), and Home Assistant's birth asks for all of it again: sent
        account by account as the broker takes it, none overflows ``mqtt.max_queue``,
        and no poll waits for it.
        """
        if not self._deferred:
            return
        with self._lock:
            room = self.high_water - self.client.waiting_states()
            while self._deferred and room > 0:
                topic = next(iter(self._deferred))
                del self._deferred[topic]
                room -= self._send_current(topic)

    def _send_current(self, topic: str) -> bool:
        """Publish a retained topic's current value; False: it has none (cleared since)."""
        if (packed := self._configs.get(topic)) is not None:
            self.client.publish_state(topic, unpack(packed), qos=CONFIG_QOS, retain=True)
        elif (payload := self._states.get(topic)) is not None:
            qos = AVAILABILITY_QOS if topic.endswith("/availability") else STATE_QOS
            self.client.publish_state(topic, payload, qos=qos, retain=True)
        else:
            return False
        return True

    def _claim(
        self, user_id: int, devices: Sequence[Device], nicknames: Mapping[str, str]
    ) -> tuple[dict[str, tuple[Device, str | None]], set[int]]:
        """The devices of an account that may publish (none under another device's id),
        and the accounts that take over an id this one gave up.

        Ids never coincide for two serials (``ha.ids``), but one serial can be in two
        accounts: the device published first keeps its id until its account drops it,
        and the other waits, refused with one warning, so their states never alternate.
        """
        mine: dict[str, tuple[Device, str | None]] = {}
        refused: dict[tuple[int, str], tuple[Device, str | None]] = {}
        for device in devices:
            sid, me = device_id(device.serial), (user_id, device.serial)
            owner = self._claims.setdefault(sid, me)
            if owner == me:
                mine[device.serial] = (device, nicknames.get(device.serial))
                continue
            if me not in self._waiting:
                log.warning(
                    "MQTT: device %s of account %d not published: its id %s is "
                    "already used by device %s of account %d",
                    device.serial,
                    user_id,
                    sid,
                    owner[1],
                    owner[0],
                )
            refused[me] = (device, nicknames.get(device.serial))
        self._waiting = {k: v for k, v in self._waiting.items() if k[0] != user_id}
        heirs = self._release(user_id, keep=mine)
        self._waiting.update(refused)
        return mine, heirs

    def _release(self, user_id: int, keep: Collection[str] = ()) -> set[int]:
        """Give up the ids of an account's devices that it no longer publishes; a device
        waiting for one of them takes it. The accounts that took one."""
        heirs: set[int] = set()
        for serial in self._accounts.get(user_id, {}):
            sid = device_id(serial)
            if serial in keep or self._claims.get(sid) != (user_id, serial):
                continue
            del self._claims[sid]
            heir = next((w for w in self._waiting if device_id(w[1]) == sid), None)
            if heir is not None:
                self._claims[sid] = heir
                self._accounts.setdefault(heir[0], {})[heir[1]] = self._waiting.pop(heir)
                heirs.add(heir[0])
                heir_user, heir_serial = heir
                log.info("MQTT: device %s of account %d published now", heir_serial, heir_user)
        return heirs

    def refresh(self, now: datetime | None = None) -> None:
        """Re-judge every known device's availability (call it when a poll did not come);
        send again what the client's full outbox dropped."""
        when = now or self._clock()
        with self._lock:
            for user_id in list(self._accounts):
                self._publish_account(user_id, when)
            self.resend_dropped()

    def resend_dropped(self) -> int:
        """Publish again the current value of each retained topic the client dropped while
        its outbox was full (a start's discovery burst at 1,000 devices); how many."""
        with self._lock:
            # Those cleared or handed over since have no current value: not sent.
            sent = sum(self._send_current(t) for t in sorted(self.client.take_dropped()))
            if sent:
                log.info("MQTT: %d retained topic(s) the full outbox dropped sent again", sent)
            return sent

    def forget_account(self, user_id: int) -> None:
        """An account was unlinked: remove its devices from HA and from the broker."""
        with self._lock:
            self._waiting = {k: v for k, v in self._waiting.items() if k[0] != user_id}
            for heir in sorted(self._release(user_id)):
                self._publish_account(heir, self._clock())
            self._accounts.pop(user_id, None)
            self._built.pop(user_id, None)
            self._reconcile(account_owner(user_id), [])

    def hand_over(self, user_id: int) -> None:
        """Another bridge process polls this account now: forget its devices here, leaving
        their topics on the broker to that process (unlike :meth:`forget_account`)."""
        with self._lock:
            self._waiting = {k: v for k, v in self._waiting.items() if k[0] != user_id}
            self._accounts.pop(user_id, None)
            self._built.pop(user_id, None)

    def close(self) -> None:
        """Cancel a pending HA-birth republish (the client is stopped separately)."""
        with self._lock:
            self._closed = True
            if self._birth_timer is not None:
                self._birth_timer.cancel()

    def health(self) -> PublisherHealth:
        with self._lock:
            return PublisherHealth(
                accounts=len(self._accounts),
                devices=sum(len(devs) for devs in self._accounts.values()),
                entities=len(self._configs),
                retained_topics=len(self._records),
                ha_births=self._ha_births,
                last_discovery=self._last_discovery,
                store_errors=self._store_errors,
            )

    def records(self) -> list[Record]:
        """Every retained topic the bridge answers for (cleared when its subject vanishes)."""
        with self._lock:
            return list(self._records.values())

    def retained(self) -> dict[str, str]:
        """The last payload published on each current config and state topic."""
        with self._lock:
            return {**{t: unpack(p) for t, p in self._configs.items()}, **self._states}

    # ------------------------------------------------------------------ publishing

    def _view(self, serial: str, device: Device, nickname: str | None, now: datetime) -> DeviceView:
        """A device as published now: with its running session and its probes' alerts."""
        return DeviceView.of(
            device,
            now,
            nickname,
            session=self._sessions.get(serial),
            alerts=self._alerts.get(serial, ()),
            cook=self._cook.get(serial, ()),
        )

    def _publish_account(self, user_id: int, now: datetime) -> None:
        devices = self._accounts.get(user_id, {})
        naming = self.naming.for_user(user_id)
        reconciled = user_id in self._built
        built = self._built.get(user_id, {})
        fresh: dict[str, tuple[Device, DeviceView, Publication]] = {}
        rebuilt = False
        for serial, (device, nickname) in devices.items():
            view = self._view(serial, device, nickname, now)
            known = built.get(serial)
            if known is not None and known[0] is device and known[1] == view:
                fresh[serial] = known  # the same device (a refresh): nothing to rebuild
            else:
                pub = device_publication(naming, view, self.table, self._memo)
                fresh[serial] = (device, view, pub)
                rebuilt = True
        self._built[user_id] = fresh
        if reconciled and not rebuilt and fresh.keys() == built.keys():
            return  # the publications it reconciled last time, unchanged: nothing to do
        self._reconcile(account_owner(user_id), [pub for _, _, pub in fresh.values()])

    def _reconcile(
        self, owner: str, pubs: Sequence[Publication], keep: Collection[str] = ()
    ) -> None:
        """Publish what changed for one owner and clear what it no longer has."""
        shape = ([pub.configs for pub in pubs], [s.topic for pub in pubs for s in pub.states])
        last = self._shapes.get(owner)
        if (
            last is not None
            and len(last[0]) == len(shape[0])
            and all(a is b for a, b in zip(last[0], shape[0], strict=True))
            and last[1] == shape[1]
        ):
            # The same entities as last time (the memo gave the same config tuples):
            # nothing to add or clear, only the states that changed (every poll's case).
            for pub in pubs:
                for state in pub.states:
                    self._send_state(state)
            return
        self._shapes[owner] = shape
        wanted: dict[str, Record] = {}
        configs: list[EntityConfig] = []
        states: list[State] = []
        for pub in pubs:
            for config in pub.configs if self.config.discovery else ():
                wanted[config.topic] = Record(config.topic, owner, "config")
                if self._configs.get(config.topic) != config.packed:
                    self._configs[config.topic] = config.packed
                    configs.append(config)
            for state in pub.states:
                wanted[state.topic] = Record(state.topic, owner, "state")
                if self._states.get(state.topic) != state.payload:
                    self._states[state.topic] = state.payload
                    states.append(state)
        vanished = [
            topic
            for topic in self._owned.get(owner, ())
            if topic not in wanted and topic not in keep
        ]
        for topic in vanished:
            self.client.clear(topic)
            self._configs.pop(topic, None)
            self._states.pop(topic, None)
        if configs and (
            self._deferred or (last is None and self.client.waiting_states() >= self.high_water)
        ):
            # A first discovery (or one behind those held back) while the outbox is full:
            # its configs, then its states, go out as the outbox drains.
            self._deferred.update(dict.fromkeys(c.topic for c in configs))
            self._deferred.update(dict.fromkeys(s.topic for s in states))
            configs, states = [], []
        for config in configs:
            self.client.publish_state(config.topic, config.json(), qos=CONFIG_QOS, retain=True)
        for state in states:
            self.client.publish_state(
                state.topic, state.payload, qos=_state_qos(state), retain=True
            )
        if configs:
            self._last_discovery = self._clock()
        added = [r for t, r in wanted.items() if self._records.get(t) != r]
        if vanished:
            self._memo.clear()  # entities went away: keep no config of theirs
            log.info("MQTT: cleared %d retained topics that %s no longer has", len(vanished), owner)
        self._remember(added, vanished)

    def _remember(self, added: Sequence[Record], removed: Sequence[str]) -> None:
        if not added and not removed:
            return
        for topic in removed:
            gone = self._records.pop(topic, None)
            if gone is not None:
                self._owned.get(gone.owner, {}).pop(topic, None)
        for record in added:
            previous = self._records.get(record.topic)
            if previous is not None and previous.owner != record.owner:
                self._owned.get(previous.owner, {}).pop(record.topic, None)
            self._records[record.topic] = record
            self._owned.setdefault(record.owner, {})[record.topic] = None
        if self.store is not None:
            self._unsaved.append((list(added), list(removed)))

    def save_records(self) -> bool:
        """Write the records changed since the last save to the store; False if it failed.

        The daemon calls this on its pipeline thread (never a poll worker's): the
        publisher itself writes no database. Changes are written in the order the
        topics were published and cleared; what could not be written waits for the
        next save.
        """
        if self.store is None:
            return True
        with self._store_lock:
            with self._lock:
                pending, self._unsaved = self._unsaved, []
            for done, (added, removed) in enumerate(pending):
                try:
                    self.store.apply(added, removed)
                except Exception as exc:
                    with self._lock:
                        self._unsaved[:0] = pending[done:]
                    self._store_failed("save", exc)
                    return False
            if pending and self._store_failing:
                self._store_failing = False
                log.info("MQTT: what was published is recorded in the database again")
            return True

    def _store_failed(self, what: str, exc: Exception) -> None:
        self._store_errors += 1
        if self._store_failing:
            return  # said once; the records wait in memory for the next save
        self._store_failing = what == "save"
        log.error(
            "MQTT: cannot %s what was published in the database (%s: %s); publishing goes on, %s",
            what,
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
            "the records wait in memory" if what == "save" else "'mqtt cleanup' may miss topics",
        )

    def _everything(self) -> list[Message]:
        """Discovery first, then every current state: what a connect or an HA birth gets."""
        now = self._clock()
        pubs: list[Publication] = []
        if self._bridge is not None:
            pubs.append(bridge_publication(self.naming, self._bridge, self.table, self._memo))
        for user_id, devices in self._accounts.items():
            pubs += [
                device_publication(
                    self.naming.for_user(user_id),
                    self._view(serial, device, nickname, now),
                    self.table,
                    self._memo,
                )
                for serial, (device, nickname) in devices.items()
            ]
        messages: list[Message] = []
        if self.config.discovery:
            for pub in pubs:
                for config in pub.configs:
                    self._configs[config.topic] = config.packed
                    messages.append(Message(config.topic, config.json(), CONFIG_QOS, True))
        for pub in pubs:
            for state in pub.states:
                self._states[state.topic] = state.payload
                messages.append(Message(state.topic, state.payload, _state_qos(state), True))
        if pubs and self.config.discovery:
            self._last_discovery = now
        return messages

    def _on_connect(self) -> list[Message]:
        with self._lock:
            self._deferred.clear()  # everything goes out now
            return self._everything()

    # ------------------------------------------------------------------ Home Assistant's birth

    def _on_ha_status(self, message: InboundMessage) -> None:
        if message.payload.strip() != b"online":
            return
        delay = self._rng.uniform(0, self.config.ha_birth_delay)
        with self._lock:
            if self._closed:
                return
            self._ha_births += 1
            if self._birth_timer is not None:
                self._birth_timer.cancel()
            # Spread the republish of every bridge on the broker (HA's advice), and give
            # HA a moment to subscribe.
            self._birth_timer = threading.Timer(delay, self._republish)
            self._birth_timer.daemon = True
            self._birth_timer.start()
        log.info("Home Assistant is online: republishing discovery in %.1f s", delay)

    def _republish(self) -> None:
        try:
            with self._lock:
                if self._closed:
                    return
                # Everything at once would overflow the outbox at 1,000 devices: it goes
                # out as the outbox drains, each topic with its value then.
                self._deferred.update(dict.fromkeys(m.topic for m in self._everything()))
            self._send_deferred()
        except Exception:
            log.exception("MQTT: republishing for Home Assistant failed")


def _changed_keys(old: Mapping[str, object], new: Mapping[str, object]) -> set[str]:
    """The keys whose value differs between two mappings (added and removed ones too)."""
    return {key for key in {*old, *new} if old.get(key) != new.get(key)}


def _state_qos(state: State) -> int:
    return AVAILABILITY_QOS if state.availability else STATE_QOS
