"""The daemon through faults: broker gone and back, database gone and back, a rough cloud.

Each ends with the daemon still running, the data complete and the entities available.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest
import sqlalchemy as sa

from grillstats_bridge.config import DatabaseConfig, MqttConfig
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import AlertHistory, Device, ReadingRow
from tests.fixtures.bridge import MakeRig, Rig
from tests.fixtures.cloud import SIGNALS
from tests.fixtures.mqtt import (
    Broker,
    PrivateBroker,
    Subscriber,
    TcpProxy,
    make_mqtt_config,
    retained,
)
from tests.test_daemon import (
    FAST,
    KETTLE,
    KETTLE_COOK,
    add_cook_alerts,
    count,
    device_root,
    events,
    session_events,
    sessions_of,
)

WAIT = 10.0


def settle(rig: Rig, timeout: float = WAIT) -> None:
    """Let the broker acknowledge what was sent, then let the bridge take the acknowledgements."""
    assert rig.bridge.mqtt.flush(timeout), "the broker did not acknowledge in time"
    rig.bridge.step()


def unpublished(database: Database) -> int:
    return count(database, AlertHistory, AlertHistory.published_at.is_(None))


def test_broker_outage_delays_firings_without_losing_any(
    make_rig: MakeRig, mqtt_config: MqttConfig, tcp_proxy: TcpProxy, subscriber: Subscriber
) -> None:
    via_proxy = dataclasses.replace(mqtt_config, host=tcp_proxy.host, port=tcp_proxy.port)
    rig = make_rig("brisket", mqtt=via_proxy, **FAST)
    assert rig.bridge.mqtt.wait_ready(WAIT)
    add_cook_alerts(rig)
    rig.run_for(30 * 60)
    stored = count(rig.database, ReadingRow)

    tcp_proxy.cut()
    rig.run_for(2 * 3600 + 15 * 60)  # both alerts fire while the broker is away
    assert not rig.bridge.mqtt.connected
    assert count(rig.database, ReadingRow) > stored + 100  # polling and storing went on
    assert unpublished(rig.database) == 2
    subscriber.sync()
    assert events(subscriber, rig) == []

    tcp_proxy.restore()
    assert rig.bridge.mqtt.wait_ready(WAIT)
    rig.bridge.step()  # the reconnect queued the outbox drain
    settle(rig)
    assert unpublished(rig.database) == 0
    subscriber.wait_for(lambda ms: len(events(subscriber, rig)) >= 2, what="the two firings")
    published = events(subscriber, rig)
    with rig.database.session() as db:
        fired = db.scalars(sa.select(AlertHistory).order_by(AlertHistory.id)).all()
    # In order, once each, with the time they happened (not when they were sent).
    assert [(e["name"], e["time"]) for e in published] == [
        (f.alert_name, f.fired_at.isoformat()) for f in fired
    ]
    rig.run_for(120)
    subscriber.sync()
    assert len(events(subscriber, rig)) == 2
    mqtt = rig.config.mqtt
    held = retained(mqtt_config.host, mqtt_config.port, f"{mqtt.base_topic}/#")
    assert held[f"{device_root(rig, SIGNALS)}/availability"] == b"online"
    assert held[f"{mqtt.base_topic}/{mqtt.instance_id}/status"] == b"online"


def test_broker_outage_delays_the_session_ended_event_without_losing_it(
    make_rig: MakeRig, mqtt_config: MqttConfig, tcp_proxy: TcpProxy, subscriber: Subscriber
) -> None:
    via_proxy = dataclasses.replace(mqtt_config, host=tcp_proxy.host, port=tcp_proxy.port)
    rig = make_rig("hot_and_fast", mqtt=via_proxy, **FAST, **KETTLE_COOK)
    assert rig.bridge.mqtt.wait_ready(WAIT)
    rig.run_for(40 * 60)
    settle(rig)
    subscriber.wait_for(lambda ms: len(session_events(subscriber, rig, KETTLE)) == 1, what="start")

    tcp_proxy.cut()
    rig.run_for(2 * 3600)  # the cook ends while the broker is away
    assert not rig.bridge.mqtt.connected
    (cook,) = sessions_of(rig, KETTLE)
    assert cook.status == "completed" and cook.end_published_at is None
    subscriber.sync()
    assert [e["event_type"] for e in session_events(subscriber, rig, KETTLE)] == ["session_started"]

    rig.restart()  # and the bridge restarts meanwhile: nothing waits in memory
    assert not rig.bridge.mqtt.connected
    rig.run_for(60)

    tcp_proxy.restore()
    assert rig.bridge.mqtt.wait_ready(WAIT)
    rig.bridge.step()  # the connect queued the outbox drain
    settle(rig)
    (cook,) = sessions_of(rig, KETTLE)
    assert cook.end_published_at is not None
    subscriber.wait_for(
        lambda ms: len(session_events(subscriber, rig, KETTLE)) >= 2, what="the ended event"
    )
    rig.run_for(30 * 60)
    rig.restart()  # a restart sends nothing again either
    assert rig.bridge.mqtt.wait_ready(WAIT)
    rig.run_for(10 * 60)
    settle(rig)
    subscriber.sync()
    got = session_events(subscriber, rig, KETTLE)
    assert [(e["event_type"], e["session_id"]) for e in got] == [
        ("session_started", cook.id),
        ("session_ended", cook.id),
    ]
    assert got[1]["end"] == (cook.end_time.isoformat() if cook.end_time else None)
    assert got[1]["status"] == "completed"


@pytest.mark.parametrize("persistence", [False, True], ids=["no-persistence", "persistence"])
def test_broker_restart_brings_every_entity_back(
    make_rig: MakeRig,
    private_broker: object,
    instance_id: str,
    persistence: bool,
) -> None:
    broker: PrivateBroker = private_broker(persistence=persistence)  # type: ignore[operator]
    config = make_mqtt_config(broker.broker, instance_id)
    rig = make_rig("brisket", mqtt=config, **FAST)
    assert rig.bridge.mqtt.wait_ready(WAIT)
    rig.run_for(600)
    assert rig.bridge.mqtt.flush(WAIT)
    before = retained(broker.broker.host, broker.broker.port, "#")
    configs = {t for t in before if t.endswith("/config")}
    assert len(configs) >= 30

    broker.restart()
    assert rig.bridge.mqtt.wait_ready(WAIT), "the bridge did not reconnect by itself"
    rig.run_for(120)
    assert rig.bridge.mqtt.flush(WAIT)
    after = retained(broker.broker.host, broker.broker.port, "#")
    assert configs <= set(after)  # every discovery config is back
    assert after[f"{device_root(rig, SIGNALS)}/availability"] == b"online"
    assert after[f"{config.base_topic}/{config.instance_id}/status"] == b"online"


def pg_proxy_rig(make_rig: MakeRig, pg_url: str, proxy: TcpProxy) -> tuple[Rig, Database]:
    url = sa.engine.make_url(pg_url).set(host=proxy.host, port=proxy.port)
    database = Database(
        DatabaseConfig(url=url.render_as_string(hide_password=False), pool_timeout=2)
    )
    return make_rig("brisket", database_override=database, **FAST), database


@pytest.fixture
def pg_proxy(pg_url: str) -> object:
    url = sa.engine.make_url(pg_url)
    proxy = TcpProxy(Broker(url.host or "127.0.0.1", url.port or 5432))
    yield proxy
    proxy.close()


# A SQLite file does not go away: the outage is a PostgreSQL server cut off behind a proxy.
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_database_outage_buffers_and_writes_everything_back(
    make_rig: MakeRig, pg_url: str, pg_proxy: TcpProxy, subscriber: Subscriber, database: Database
) -> None:
    rig, db = pg_proxy_rig(make_rig, pg_url, pg_proxy)
    try:
        add_cook_alerts(rig)
        rig.run_for(30 * 60)
        pg_proxy.cut()
        subscriber.sync()
        subscriber.clear()
        rig.run_for(40 * 60)  # the pit alert's moment passes while the database is away
        assert not rig.bridge.pipeline.database_ok
        buffered = len(rig.bridge.buffer)
        assert buffered > 100
        healthy, report = rig.bridge.health_report()
        assert not healthy and report["database"]["reachable"] is False
        assert report["database"]["buffered_readings"] == buffered
        # States kept reaching MQTT meanwhile.
        subscriber.sync()
        pit_state = [
            m for m in subscriber.snapshot() if m.topic.startswith(device_root(rig, SIGNALS))
        ]
        assert len(pit_state) > 10

        pg_proxy.restore()
        rig.run_for(120)
        assert rig.bridge.pipeline.database_ok and len(rig.bridge.buffer) == 0
        settle(rig)
        subscriber.sync()  # acknowledged by the broker is not yet delivered to us
        # Every reading that was polled is stored: nothing lost, nothing twice.
        assert count(database, ReadingRow) == rig.bridge.stats.values
        assert unpublished(database) == 0
        assert [e["name"] for e in events(subscriber, rig)] == ["Pit hot"]
        assert rig.bridge.health_report()[0]
    finally:
        rig.bridge.shutdown()
        db.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # server backends to kill
def test_killed_database_connections_are_replaced(make_rig: MakeRig, database: Database) -> None:
    assert database.dialect == "postgresql"
    rig = make_rig("brisket", **FAST)
    rig.run_for(20 * 60)
    name = database.url.database
    admin = sa.create_engine(database.url, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        killed = conn.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"
            ),
            {"db": name},
        ).scalar_one()
    admin.dispose()
    assert killed >= 1
    rig.run_for(20 * 60)
    assert rig.bridge.pipeline.database_ok and rig.bridge.stats.pipeline_errors == 0
    assert len(rig.bridge.buffer) == 0
    assert count(database, ReadingRow) == rig.bridge.stats.values


def first_failure(rig: Rig) -> None:
    """Step poll by poll until the account records a failure (or ten polls passed)."""
    account = rig.bridge.scheduler.accounts[rig.user_id]
    for _ in range(10):
        rig.cloud.clock.set(rig.bridge.next_event())
        rig.bridge.step()
        if account.failures:
            return


def test_rate_limit_honours_retry_after(make_rig: MakeRig, database: Database) -> None:
    rig = make_rig("brisket", **FAST)
    rig.run_for(10 * 60)
    rig.cloud.fail_next(429, retry_after=600)
    first_failure(rig)
    account = rig.bridge.scheduler.accounts[rig.user_id]
    assert account.failures == 1 and account.last_error_at is not None
    assert (account.next_poll - account.last_error_at).total_seconds() == 600
    requests = rig.cloud.request_count()
    rig.run_for(599)
    assert rig.cloud.request_count() == requests  # nothing asked before Retry-After ran out
    rig.run_for(30 * 60)
    assert account.state.value == "ok" and account.failures == 0
    assert count(database, ReadingRow) == rig.bridge.stats.values


def test_an_event_sent_but_not_marked_goes_again_with_its_id(
    make_rig: MakeRig, subscriber: Subscriber, database: Database
) -> None:
    """A crash between the broker's acknowledgement and the database's mark: at least once."""
    rig = make_rig("brisket", **FAST)
    add_cook_alerts(rig)
    rig.run_for(90 * 60)  # the pit alert fires (about 55 min in)
    settle(rig)
    subscriber.sync()
    (sent,) = events(subscriber, rig)
    assert sent["name"] == "Pit hot" and sent["event_id"] == f"firing-{sent['firing_id']}"
    assert unpublished(database) == 0
    # The crash: the mark never reached the database (it was rolled back with the process).
    with database.transaction() as db:
        db.execute(sa.update(AlertHistory).values(published_at=None))
    rig.restart()
    rig.run_for(60)
    settle(rig)
    subscriber.sync()
    again = events(subscriber, rig)
    assert [e["event_id"] for e in again] == [sent["event_id"]] * 2  # the same event, twice
    assert again[1] == sent and unpublished(database) == 0


def test_five_503_answers_in_a_row_cost_less_than_two_minutes(
    make_rig: MakeRig, database: Database
) -> None:
    rig = make_rig("brisket", **FAST)
    rig.run_for(10 * 60)
    errors = rig.bridge.stats.cloud_errors
    rig.cloud.fail_next(503, count=5)
    first_failure(rig)
    account = rig.bridge.scheduler.accounts[rig.user_id]
    began = account.last_error_at
    assert began is not None
    for _ in range(20):  # poll by poll until the first good one after the fifth refusal
        rig.cloud.clock.set(rig.bridge.next_event())
        rig.bridge.step()
        if account.failures == 0:
            break
    assert rig.bridge.stats.cloud_errors - errors == 5
    assert account.state.value == "ok" and account.last_success is not None
    assert (account.last_success - began).total_seconds() < 120
    rig.run_for(10 * 60)
    assert count(database, ReadingRow) == rig.bridge.stats.values


def test_a_day_long_retry_after_is_cut_to_the_cap_and_said(
    make_rig: MakeRig, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    rig = make_rig("brisket", **FAST)
    rig.run_for(10 * 60)
    rig.cloud.fail_next(429, retry_after=86400)
    with caplog.at_level(logging.WARNING, logger="grillstats_bridge.bridge.daemon"):
        first_failure(rig)
    account = rig.bridge.scheduler.accounts[rig.user_id]
    assert account.failures == 1 and account.last_error_at is not None
    # polling.max_retry_after (one hour by default), not the day the cloud asked for
    assert (account.next_poll - account.last_error_at).total_seconds() == 3600
    said = [r.getMessage() for r in caplog.records if "max_retry_after" in r.getMessage()]
    assert len(said) == 1 and "asked to wait 86400 s, waiting 3600 s" in said[0]
    rig.run_for(2 * 60 * 60)
    assert account.state.value == "ok" and account.failures == 0
    assert count(database, ReadingRow) == rig.bridge.stats.values


@pytest.mark.parametrize(
    ("fault", "failures"),
    [
        (lambda sim: sim.fail_next(503, count=3), 3),
        (lambda sim: sim.malform_next(kind="json", count=2), 2),
        (lambda sim: sim.fail_next(401, endpoint="runQuery"), 0),  # refreshed and retried once
        (lambda sim: sim.malform_next(kind="document"), 0),  # that document skipped, rest kept
    ],
    ids=["503", "malformed-json", "401", "malformed-document"],
)
def test_cloud_faults_are_ridden_out(
    make_rig: MakeRig, fault: object, failures: int, database: Database
) -> None:
    rig = make_rig("brisket", **FAST)
    rig.run_for(10 * 60)
    fault(rig.cloud)  # type: ignore[operator]
    errors = rig.bridge.stats.cloud_errors
    polls = rig.bridge.stats.polls
    rig.run_for(60 * 60)
    account = rig.bridge.scheduler.accounts[rig.user_id]
    assert rig.bridge.stats.cloud_errors - errors == failures
    assert account.state.value == "ok" and account.failures == 0
    assert rig.bridge.stats.polls > polls + 10
    # Whatever was polled is stored, once; no device was dropped for a bad document.
    assert count(database, ReadingRow) == rig.bridge.stats.values
    with database.session() as db:
        assert all(db.scalars(sa.select(Device.is_active)))
    assert rig.bridge.health_report()[0]
