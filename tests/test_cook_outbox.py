"""The cook's events through the outbox, on SQLite and PostgreSQL and the real broker: kept
in ``cook_events`` when they happen, sent after a broker outage or a restart with the same
``event_id``, marked once the broker acknowledged them, sent again when not marked."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import sqlalchemy as sa

from grillstats_bridge.alerts.rules import add_alert
from grillstats_bridge.config import MqttConfig
from grillstats_bridge.cook import events as cook_events
from grillstats_bridge.cook.model import CookEvent, CookEventKind
from grillstats_bridge.domain import Unit
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import CookEventRow, Device, GrillingSession, User
from tests.fixtures.bridge import USER, MakeRig, Rig
from tests.fixtures.cloud import SIGNALS
from tests.fixtures.mqtt import Subscriber, TcpProxy
from tests.test_cook import T0
from tests.test_daemon import FAST, device_root
from tests.test_daemon_faults import WAIT, settle

H = 3600.0


def cook_messages(sub: Subscriber, rig: Rig, suffix: str = "/event") -> list[dict[str, object]]:
    """The cook's events on the smoker's event topic (the alert firings left out)."""
    topic = f"{device_root(rig, SIGNALS)}{suffix}"
    sub.sync()
    found = [m.json() for m in sub.snapshot() if m.topic == topic]
    return [e for e in found if str(e.get("event_id", "")).startswith("cook-")]


def rows(database: Database) -> list[CookEventRow]:
    with database.session() as db:
        return list(db.scalars(sa.select(CookEventRow).order_by(CookEventRow.id)))


def flat_target(rig: Rig) -> None:
    """A target of 203 °F on brisket A's flat (channel 2; channel 1 is the pit)."""
    rig.run_for(10)  # the first poll registers the devices
    with rig.database.transaction() as db:
        add_alert(db, USER, serial=SIGNALS, probe=2, kind="target", target=203, name="Flat")


def test_a_stall_found_while_the_broker_is_away_arrives_after_it_returns(
    make_rig: MakeRig, mqtt_config: MqttConfig, tcp_proxy: TcpProxy, subscriber: Subscriber
) -> None:
    via_proxy = dataclasses.replace(mqtt_config, host=tcp_proxy.host, port=tcp_proxy.port)
    rig = make_rig("brisket", at=4 * H, mqtt=via_proxy, **FAST)  # A stalls from about 4 h 30
    assert rig.bridge.mqtt.wait_ready(WAIT)
    flat_target(rig)
    rig.run_for(10 * 60)
    assert rows(rig.database) == []

    tcp_proxy.cut()
    rig.run_for(80 * 60)  # the stall starts while the broker is away
    assert not rig.bridge.mqtt.connected
    (row,) = rows(rig.database)
    assert row.kind == "stall_started" and row.published_at is None
    assert (row.device_id, row.probe) == (SIGNALS, 2)
    with rig.database.session() as db:
        owner = db.scalar(sa.select(User.id).where(User.email == USER))
        session = db.scalar(sa.select(GrillingSession.id).where(GrillingSession.status == "active"))
    assert row.user_id == owner and row.session_id == session is not None
    assert cook_messages(subscriber, rig) == []

    rig.restart()  # nothing waits in memory either
    rig.run_for(60)
    tcp_proxy.restore()
    assert rig.bridge.mqtt.wait_ready(WAIT)
    rig.bridge.step()  # the connect queued the outbox drain
    settle(rig)
    subscriber.wait_for(lambda ms: len(cook_messages(subscriber, rig)) == 1, what="the stall")
    (sent,) = cook_messages(subscriber, rig)
    assert sent["event_id"] == f"cook-{row.id}" and sent["event_type"] == "stall_started"
    assert sent["time"] == row.at.isoformat()  # when it happened, not when it was sent
    assert sent["stall_start"] == (row.stall_start.isoformat() if row.stall_start else None)
    assert cook_messages(subscriber, rig, "/probe/2/event") == [sent]  # the device triggers
    (row,) = rows(rig.database)
    assert row.published_at is not None
    rig.run_for(10 * 60)
    assert len(cook_messages(subscriber, rig)) == 1  # marked: not sent again


def test_a_cook_event_sent_but_not_marked_goes_again_with_its_id(
    make_rig: MakeRig, subscriber: Subscriber
) -> None:
    rig = make_rig("brisket", at=4 * H, **FAST)
    flat_target(rig)
    rig.run_for(90 * 60)
    settle(rig)
    (sent,) = cook_messages(subscriber, rig)
    (row,) = rows(rig.database)
    assert sent["event_id"] == f"cook-{row.id}" and row.published_at is not None
    # The crash: the mark never reached the database (it was rolled back with the process).
    with rig.database.transaction() as db:
        db.execute(sa.update(CookEventRow).values(published_at=None))
    rig.restart()
    rig.run_for(60)
    settle(rig)
    again = cook_messages(subscriber, rig)
    assert [e["event_id"] for e in again] == [sent["event_id"]] * 2  # the same event, twice
    assert again[1] == sent
    assert all(r.published_at is not None for r in rows(rig.database))


def test_events_are_kept_with_their_owner_and_read_back_in_order(database: Database) -> None:
    with database.transaction() as db:
        user = User(email="cook@example.com", password_hash="x")
        db.add(user)
        db.flush()
        db.add(Device(user_id=user.id, device_id=SIGNALS))
        owner = user.id

    def event(kind: CookEventKind, minutes: float) -> CookEvent:
        return CookEvent(
            kind=kind,
            serial=SIGNALS,
            channel=2,
            at=T0 + timedelta(minutes=minutes),
            value=160.0,
            unit=Unit.FAHRENHEIT,
            stall_start=T0,
            stall_seconds=60.0 * minutes if kind is CookEventKind.STALL_ENDED else None,
        )

    with database.transaction() as db:
        kept = cook_events.record(
            db,
            [
                event(CookEventKind.STALL_STARTED, 30),
                event(CookEventKind.STALL_ENDED, 200),
                CookEvent(  # a device nobody owns: not kept
                    kind=CookEventKind.READY,
                    serial="nobody",
                    channel=1,
                    at=T0,
                    value=1.0,
                    unit=Unit.CELSIUS,
                ),
            ],
        )
    assert kept == 2
    with database.transaction() as db:
        waiting = cook_events.pending(db, 10)
        mine = db.scalars(cook_events.pending_query(10).where(CookEventRow.user_id == owner))
        others = db.scalars(cook_events.pending_query(10).where(CookEventRow.user_id != owner))
        assert len(list(mine)) == 2 and list(others) == []
        assert len(cook_events.pending(db, 10, users={owner})) == 2
        assert cook_events.pending(db, 10, users={owner + 1}) == []
    assert [(s.event.kind, s.user_id, s.session_id) for _, s in waiting] == [
        (CookEventKind.STALL_STARTED, owner, None),
        (CookEventKind.STALL_ENDED, owner, None),
    ]
    first, second = (s for _, s in waiting)
    assert first.event == event(CookEventKind.STALL_STARTED, 30)  # every field back, aware UTC
    assert second.event.stall_seconds == 200 * 60.0
    assert first.event_id == f"cook-{first.id}"
    with database.transaction() as db:
        assert cook_events.mark_published(db, [first.id], T0) == 1
        assert cook_events.mark_published(db, [first.id], T0) == 0  # once
        assert [i for i, _ in cook_events.pending(db, 10)] == [second.id]
