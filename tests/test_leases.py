"""Account leases (issue 17): several bridge processes on one PostgreSQL, each account
polled by one of them; a dead process's accounts taken over within the lease time; a
process whose lease was taken writes and publishes nothing for that account.

Bridges are built in this process with their own :class:`ProcessIdentity`, stepped on
the simulator's clock (or, for a paused process, on a clock of their own), against the
real PostgreSQL, the real broker and the simulator over HTTP. Two bridges in one test
have two instance ids: the instance claim of main lets one bridge per instance id in.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import paho.mqtt.client as paho
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from grillstats_bridge.accounts.service import link_account
from grillstats_bridge.alerts.rules import add_alert
from grillstats_bridge.bridge.daemon import Bridge
from grillstats_bridge.bridge.identity import ProcessIdentity
from grillstats_bridge.bridge.processes import journal_file
from grillstats_bridge.clock import Clock, SimClock
from grillstats_bridge.config import Config, MqttConfig, ThermoworksConfig
from grillstats_bridge.domain import Reading, Unit
from grillstats_bridge.ha.ids import sanitize
from grillstats_bridge.simulator.server import CloudSimulator
from grillstats_bridge.store import leases, users
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.journal import Journal
from grillstats_bridge.store.models import (
    AccountLease,
    AlertHistory,
    Device,
    GrillingSession,
    ReadingRow,
    TemperatureAlert,
)
from tests.fixtures.cloud import SIGNALS, MakeCloud
from tests.fixtures.mqtt import Broker, Subscriber, clear_retained, make_mqtt_config, retained

LEASE_TIME = 60.0  # validity 40 s, a tick every 20 s
SCENARIOS = ["brisket", "hot_and_fast", "fridge_logger", "kitchen_logger"]
COOK = "cook0@example.com"  # linked to brisket's pitmaster: the alerts are on their smoker


@dataclasses.dataclass
class Site:
    """Users linked to the simulator's accounts, and the bridges built on them."""

    cloud: CloudSimulator
    database: Database
    config: Config
    broker: Broker
    user_ids: list[int]
    bridges: list[Bridge] = dataclasses.field(default_factory=list)
    mqtts: list[MqttConfig] = dataclasses.field(default_factory=list)

    def bridge(self, index: int, *, clock: Clock | None = None, mqtt: int | None = None) -> Bridge:
        """A started bridge (process ``index``) on its own instance id (or ``mqtt``'s)."""
        if mqtt is None:
            base = self.config.mqtt.instance_id
            self.mqtts.append(make_mqtt_config(self.broker, f"{base}p{len(self.mqtts)}"))
            mqtt = len(self.mqtts) - 1
        cfg = dataclasses.replace(self.config, mqtt=self.mqtts[mqtt])
        bridge = Bridge(
            cfg,
            clock=clock or self.cloud.clock,
            database=self.database,
            identity=ProcessIdentity(index=index, count=2),
        )
        bridge.start(threads=False)
        self.bridges.append(bridge)
        return bridge

    def drive(self, seconds: float, bridges: list[Bridge], *, each: float = 20.0) -> None:
        """Move the shared clock ``each`` seconds at a time, stepping every bridge."""
        end = self.cloud.now() + timedelta(seconds=seconds)
        while self.cloud.now() < end:
            left = (end - self.cloud.now()).total_seconds()
            self.cloud.clock.advance(min(each, left))
            for bridge in bridges:
                bridge.step()
            polled = [set(b.pollers) for b in bridges]
            assert sum(len(p) for p in polled) == len(set().union(*polled)), "polled by two"


@pytest.fixture
def site(
    pg_url: str,
    database: Database,
    config: Config,
    mqtt_config: MqttConfig,
    mqtt_broker: Broker,
    make_cloud: MakeCloud,
) -> Iterator[Site]:
    if database.dialect != "postgresql":
        pytest.skip("leases are PostgreSQL's")
    cloud = make_cloud(SCENARIOS, at=0)
    cfg = dataclasses.replace(
        config.replace("database", lease_time=LEASE_TIME),
        thermoworks=ThermoworksConfig(**cloud.urls(), timeout=5.0),
        mqtt=mqtt_config,
    ).replace("http", enabled=False)
    cfg = cfg.replace("polling", active_interval=60.0, idle_interval=300.0)
    user_ids = []
    for n, account in enumerate(cloud.scenario.accounts):
        email = f"cook{n}@example.com"
        with database.transaction() as db:
            user_ids.append(users.add_user(db, email, "grill-password", cfg.security).id)
        link_account(
            database,
            cfg,
            email,
            account.password,
            provider=account.provider,
            tw_email=account.email,
            store_password=True,
            clock=cloud.now,
        )
    site = Site(cloud, database, cfg, mqtt_broker, user_ids)
    yield site
    for bridge in site.bridges:
        bridge.shutdown()
    for m in site.mqtts:
        clear_retained(mqtt_broker.host, mqtt_broker.port, f"{m.base_topic}/#")
        clear_retained(mqtt_broker.host, mqtt_broker.port, f"{m.discovery_prefix}/#")


@pytest.fixture(params=["postgresql"])
def db_url(request: pytest.FixtureRequest, pg_url: str) -> Iterator[str]:
    """PostgreSQL only (the shared fixture's SQLite half has no leases)."""
    from tests.fixtures.db import truncate_all

    database = Database(dataclasses.replace(Config().database, url=pg_url))
    truncate_all(database)
    database.dispose()
    yield pg_url


def lease_rows(database: Database) -> dict[int, tuple[str | None, int]]:
    with database.session() as db:
        rows = db.execute(sa.select(AccountLease.user_id, AccountLease.owner, AccountLease.token))
        return {u: (o, t) for u, o, t in rows}


def count(database: Database, model: type, *where: Any) -> int:
    with database.session() as db:
        return int(db.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0)


def event_ids(sub: Subscriber, roots: list[str]) -> list[tuple[str, str]]:
    """(topic, event id) of every event published under any of the roots."""
    out = []
    for m in sub.snapshot():
        ours = any(m.topic.startswith(r) for r in roots) and m.topic.endswith("/event")
        if ours and (event := m.json().get("event_id")):
            out.append((m.topic, str(event)))
    return out


def wait_for(condition: Callable[[], bool], step: Callable[[], None], limit: int = 20) -> int:
    """Step until ``condition`` holds (at most ``limit`` steps); how many steps it took."""
    for n in range(limit):
        if condition():
            return n
        step()
    raise AssertionError("condition not reached")


def test_two_processes_share_the_accounts_take_over_a_dead_one_and_rebalance(
    site: Site, mqtt_broker: Broker
) -> None:
    first = site.bridge(0)
    second = site.bridge(1)
    # The first took every account (alone at its first tick); its next tick sees the
    # second and gives half back, which the second takes at its own next tick.
    site.drive(60, [first, second])
    assert len(first.pollers) == len(second.pollers) == 2
    assert set(first.pollers) | set(second.pollers) == set(site.user_ids)
    site.drive(10 * 60, [first, second])
    for bridge in (first, second):  # each polls its two, and has
        for user_id in bridge.pollers:
            assert bridge.scheduler.accounts[user_id].last_success is not None
    owners = lease_rows(site.database)
    assert {o for o, _ in owners.values()} == {first.leases.owner, second.leases.owner}

    cook = site.user_ids[0]
    dead, alive = (first, second) if cook in first.pollers else (second, first)
    with site.database.transaction() as db:
        add_alert(db, COOK, serial=SIGNALS, probe=1, kind="target", target=225, name="Pit hot")
        add_alert(db, COOK, serial=SIGNALS, probe=2, kind="target", target=110, name="Flat 110")
    roots = [f"{m.base_topic}/{m.instance_id}" for m in site.mqtts]
    with Subscriber(mqtt_broker.host, mqtt_broker.port, *(f"{r}/#" for r in roots)) as sub:
        site.drive(10 * 60, [first, second])
        # kill -9 of the process holding the cook's account: it is never stepped again.
        last_renewal = dead.leases.next_tick - dead.leases.period
        taken = site.cloud.now()
        steps = wait_for(
            lambda: set(alive.pollers) == set(site.user_ids),
            lambda: site.drive(5, [alive], each=5),
            limit=30,
        )
        takeover = (site.cloud.now() - last_renewal).total_seconds()
        assert takeover <= LEASE_TIME, f"taken over {takeover:.0f} s after the last renewal"
        assert steps > 0 and site.cloud.now() > taken
        site.drive(5, [alive], each=5)  # the taken accounts' first polls
        assert all(alive.scheduler.accounts[u].last_success for u in site.user_ids)
        # The cook goes on: its tracker rebuilt from the stored readings, not from scratch.
        taken_over = alive.estimates(SIGNALS)
        assert sorted(taken_over) == [1, 2]
        assert taken_over[2].done_at is not None, taken_over[2]

        # A restarted process (a new identity, the dead one's instance) takes its share back.
        dead.shutdown()
        site.bridges.remove(dead)
        again = site.bridge(dead.identity.index, mqtt=site.mqtts.index(dead.config.mqtt))
        site.drive(60, [alive, again])
        assert len(alive.pollers) == len(again.pollers) == 2
        site.drive(20, [alive, again])  # one more tick: each process has seen the other's
        shown = {alive.leases.owner: 2, again.leases.owner: 2}  # on the bridge device, too
        assert dict(alive.bridge_status().processes) == dict(again.bridge_status().processes)
        assert dict(again.bridge_status().processes) == shown

        site.drive(2 * 3600 + 20 * 60, [alive, again])  # the pit passes 225 °F, the flat 110
        sub.sync()
        unpublished = (AlertHistory, AlertHistory.published_at.is_(None))
        deadline = time.monotonic() + 10  # the broker's acknowledgements come on its thread
        while count(site.database, *unpublished) and time.monotonic() < deadline:
            for bridge in (alive, again):
                bridge.work.drain()
            threading.Event().wait(0.02)
        ids = event_ids(sub, roots)
    fired = count(site.database, AlertHistory)
    assert fired == 2  # each alert fired once, in whichever process held the account
    assert count(site.database, *unpublished) == 0
    firings = [i for t, i in ids if i.startswith("firing-") and t.count("/") == 4]
    assert len(firings) == len(set(firings)) == 2, ids  # on the smoker's own event topic
    assert len(ids) == len(set(ids)), f"an event published twice: {ids}"
    smoker = count(site.database, GrillingSession, GrillingSession.device_id == SIGNALS)
    assert smoker == 1  # one cook on the smoker, whichever process tracked it


def test_a_paused_process_whose_lease_was_taken_writes_and_publishes_nothing_for_it(
    site: Site, mqtt_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    site.cloud.clock.advance(50 * 60)  # the pit crosses 225 °F at about 55 minutes
    paused = SimClock(site.cloud.now(), speed=0)  # the first process's clock: it stands still
    first = site.bridge(0, clock=paused)
    assert set(first.pollers) == set(site.user_ids)
    first.poll_now()
    first.step()
    cook = site.user_ids[0]
    with site.database.transaction() as db:
        add_alert(db, COOK, serial=SIGNALS, probe=1, kind="target", target=225, name="Pit hot")
    token = lease_rows(site.database)[cook][1]

    # The first process stops (a long pause); time passes its leases' expiry everywhere
    # but on its own clock, and a second process takes every account.
    site.cloud.clock.advance(LEASE_TIME)
    second = site.bridge(1)
    assert set(second.pollers) == set(site.user_ids)
    assert lease_rows(site.database)[cook] == (second.leases.owner, token + 1)
    site.cloud.clock.advance(10 * 60)
    second.step()  # the pit passed 225 °F: the second process fires the alert
    assert count(site.database, AlertHistory) == 1

    root = f"{first.config.mqtt.base_topic}/{first.config.mqtt.instance_id}"
    with Subscriber(mqtt_broker.host, mqtt_broker.port, f"{root}/device/#") as sub:
        readings = count(site.database, ReadingRow)
        # A poll of the first process that reaches its pipeline after the takeover (the
        # state check passed just before it): the write transaction's fence drops it.
        poller = first.pollers[cook]
        poll = poller.poll()
        assert poll.readings
        outcome = first.pipeline.process([poll], paused.now())
        assert outcome.lost == {cook} and outcome.stored == 0
        assert outcome.firings == [] and outcome.session_changes == [] and not outcome.owned
        assert count(site.database, ReadingRow) == readings

        # Its schedule goes on: every account's poll is dropped before anything goes out.
        with caplog.at_level(logging.WARNING):
            first.poll_now()
            first.step()
        assert first.pollers == {} and first.leases.held() == {}
        said = [r.getMessage() for r in caplog.records if "lease taken" in r.getMessage()]
        assert len(said) == len(site.user_ids)
        assert count(site.database, ReadingRow) == readings
        first.step()
        sub.sync()
        live = [m.topic for m in sub.snapshot() if not m.retain]  # not what was there before
        assert [t for t in live if sanitize(SIGNALS) in t] == []
    assert count(site.database, AlertHistory) == 1
    assert count(site.database, GrillingSession, GrillingSession.device_id == SIGNALS) <= 1
    assert first.health_report()[1]["leases"]["held"] == 0
    assert second.health_report()[1]["leases"]["held"] == len(site.user_ids)


def test_fence_locks_out_a_taker_until_the_writer_commits(site: Site) -> None:
    """FOR SHARE: a lease being written for cannot change hands mid-transaction."""
    first = site.bridge(0)
    cook, *others = site.user_ids
    held = first.leases.held()
    later = site.cloud.now() + timedelta(seconds=10 * LEASE_TIME)  # every lease expired then
    with site.database.transaction() as writer:
        assert first.leases.fence(writer, [cook]) == {cook}
        with site.database.transaction() as taker:
            taken = leases.take(taker, "someone-else", 10, later, later)
    assert set(taken) == set(others)  # SKIP LOCKED: the fenced one is not even waited for
    assert lease_rows(site.database)[cook] == (first.leases.owner, held[cook])
    first.poll_now()
    first.step()  # the others were taken: their polls are dropped, the cook's goes on
    assert set(first.pollers) == {cook}


def test_processes_of_one_instance_answer_a_command_once_and_one_publishes_the_bridge(
    site: Site, mqtt_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """Both processes of one instance id receive every Home Assistant command: only the
    one holding the device's account applies it; the instance's first process alone
    publishes the bridge's own device (one writer for its topics and their records)."""
    caplog.set_level(logging.DEBUG, logger="grillstats_bridge.alerts.entities")
    caplog.set_level(logging.DEBUG, logger="grillstats_bridge.sessions.entities")
    first = site.bridge(0)
    second = site.bridge(1, mqtt=0)  # the same instance id: one bridge of two processes
    site.drive(60, [first, second])
    assert len(first.pollers) == len(second.pollers) == 2
    assert [first.leases.leads, second.leases.leads].count(True) == 1

    root = f"{site.mqtts[0].base_topic}/{site.mqtts[0].instance_id}"
    device = f"{root}/device/{sanitize(SIGNALS)}"
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.connect(mqtt_broker.host, mqtt_broker.port)
    client.loop_start()
    try:
        for topic, payload in [
            (f"{device}/probe/2/target/set", b"203"),
            (f"{device}/session/start/set", b"Sunday brisket"),
        ]:
            client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()

    def said(text: str) -> int:
        return sum(text in r.getMessage() for r in caplog.records)

    applied = ["Home Assistant set the target of probe 2", "session started from MQTT"]
    left = "another process holds its account"
    deadline = time.monotonic() + 10
    while not (all(map(said, applied)) and said(left) == 2) and time.monotonic() < deadline:
        for bridge in (first, second):  # the commands wait for each one's pipeline
            bridge.work.drain()
        threading.Event().wait(0.02)
    assert [said(a) for a in applied] == [1, 1], "applied by the holder"
    assert said(left) == 2, "left by the other process"
    active = (GrillingSession.device_id == SIGNALS, GrillingSession.end_time.is_(None))
    assert count(site.database, GrillingSession, *active) == 1
    with site.database.transaction() as db:
        targets = db.scalars(
            sa.select(TemperatureAlert).where(TemperatureAlert.device_id == SIGNALS)
        ).all()
    assert [(a.probe_id, a.target_temperature) for a in targets] == [("2", 203.0)]

    site.drive(120, [first, second])
    bridge_topic = f"{root}/bridge"  # the bridge device's state
    publishing = [bridge_topic in b.publisher.retained() for b in (first, second)]
    assert publishing == [first.leases.leads, second.leases.leads]
    assert publishing.count(True) == 1
    assert not [r for r in caplog.records if "UniqueViolation" in r.getMessage()]


def test_a_device_is_available_while_the_process_holding_its_account_lives(
    site: Site, mqtt_broker: Broker
) -> None:
    """Several processes: each device's entities need the holding process's own status
    topic (its will) besides the bridge's; the process that takes the account over
    publishes them again with its own."""
    first = site.bridge(0)
    second = site.bridge(1, mqtt=0)
    site.drive(60, [first, second])
    holder, other = (first, second) if site.user_ids[0] in first.pollers else (second, first)
    mqtt = site.mqtts[0]
    config_topic = (
        f"{mqtt.discovery_prefix}/sensor/{mqtt.instance_id}/"
        f"{sanitize(SIGNALS)}_p1_temperature/config"
    )

    def availability() -> list[str]:
        found = retained(mqtt_broker.host, mqtt_broker.port, config_topic)
        assert config_topic in found, sorted(found)[:5]
        return [a["topic"] for a in json.loads(found[config_topic])["availability"]]

    device = holder.publisher.naming.availability_topic(SIGNALS)
    status = holder.publisher.naming.status_topic
    assert availability() == [status, holder.publisher.naming.holder_topic, device]
    assert holder.publisher.naming.holder_topic != other.publisher.naming.holder_topic

    holder.shutdown()  # its leases given back: the other takes them at its next tick
    site.bridges.remove(holder)
    wait_for(
        lambda: set(other.pollers) == set(site.user_ids),
        lambda: site.drive(5, [other], each=5),
        limit=30,
    )
    site.drive(20, [other])
    other.publisher.client.flush(10)
    assert availability() == [status, other.publisher.naming.holder_topic, device]


def test_bridge_info_is_the_first_process_s_and_lists_every_process_s_accounts(
    site: Site, mqtt_broker: Broker
) -> None:
    """``<root>/bridge/info`` is written by the process that writes the bridge's device
    only, and says which accounts each live process holds; when that process stops,
    the next one writes it, with the accounts it took over."""
    first = site.bridge(0)
    second = site.bridge(1, mqtt=0)  # the same instance id: one bridge of two processes
    site.drive(60, [first, second])
    leader, other = (first, second) if first.leases.leads else (second, first)
    assert not other.leases.leads
    topic = leader.requests.info_topic

    def info() -> dict[str, Any]:
        for bridge in site.bridges:
            assert bridge.mqtt.flush(10)
        found = retained(mqtt_broker.host, mqtt_broker.port, topic)
        assert topic in found
        return dict(json.loads(found[topic]))

    shown = info()
    assert shown["processes"] == {
        b.leases.owner: sorted(b.pollers)
        for b in sorted(site.bridges, key=lambda b: b.leases.owner)
    }
    assert sorted(u for held in shown["processes"].values() for u in held) == sorted(site.user_ids)
    assert other.requests._info == ""  # it never published one

    leader.shutdown()  # its leases given back: the other takes them, and leads
    site.bridges.remove(leader)
    wait_for(
        lambda: set(other.pollers) == set(site.user_ids) and other.leases.leads,
        lambda: site.drive(5, [other], each=5),
        limit=30,
    )
    site.drive(20, [other])
    assert info()["processes"] == {other.leases.owner: sorted(site.user_ids)}


def test_a_journal_s_readings_are_stored_though_another_process_holds_their_account_now(
    site: Site,
) -> None:
    """A stop during a database outage journals the readings of the accounts its process
    held; by the next start the accounts were shared out again, and a journal of an index
    no longer run is process 0's to replay: every reading is stored, none by two."""
    first, second = site.bridge(0), site.bridge(1)
    site.drive(60, [first, second])
    assert len(first.pollers) == len(second.pollers) == 2
    theirs = sorted(second.pollers)[0]  # an account the second holds, and goes on holding
    with site.database.session() as db:
        serial = db.scalar(sa.select(Device.device_id).where(Device.user_id == theirs))
    assert serial is not None
    earlier = site.cloud.now() - timedelta(hours=1, seconds=7)
    saved = [
        (
            theirs,
            Reading(serial=serial, channel=1, time=earlier, value=201.5, unit=Unit.FAHRENHEIT),
        ),
        (theirs, Reading(serial=serial, channel=2, time=earlier, value=99.5, unit=Unit.FAHRENHEIT)),
    ]
    # `--processes 3` ran before: its process 2's journal is nobody's now
    orphan = journal_file(first.config, ProcessIdentity(index=2, count=3))
    Journal(orphan).save(saved)
    first.shutdown()
    site.bridges.remove(first)
    again = site.bridge(0, mqtt=site.mqtts.index(first.config.mqtt))  # replays at its start
    assert theirs not in again.pollers and theirs in second.pollers
    stored = count(
        site.database, ReadingRow, ReadingRow.device_id == serial, ReadingRow.time == earlier
    )
    assert stored == 2  # without the change: 0 (dropped as another process's account)
    assert not orphan.exists() and not again.pipeline.journal_pending
