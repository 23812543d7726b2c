"""The daemon end to end: the simulator over HTTP, SQLite and PostgreSQL, the real broker.

Each test drives the bridge step by step on the simulator's clock (``make_rig``),
so hours of a cook take seconds and every run is the same; what the broker
received is read back by a real subscriber.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
import sqlalchemy as sa

from grillstats_bridge.alert_service import add_alert
from grillstats_bridge.db import Database
from grillstats_bridge.discovery import sanitize
from grillstats_bridge.models import AlertHistory, Device, GrillingSession, ProbeRow, ReadingRow
from tests.fixtures.bridge import USER, MakeRig, Rig
from tests.fixtures.cloud import GATEWAY, MEAT_FLAT, SIGNALS, assert_no_secret
from tests.fixtures.mqtt import Subscriber, retained

FAST = {"polling": {"active_interval": 60.0, "idle_interval": 300.0}}


def add_cook_alerts(rig: Rig) -> None:
    """The pit reaching 225 °F (about 55 min in) and the flat reaching 110 °F (about 2 h 25)."""
    rig.run_for(10)  # the first poll registers the devices
    with rig.database.transaction() as db:
        add_alert(db, USER, serial=SIGNALS, probe=1, kind="target", target=225, name="Pit hot")
        add_alert(db, USER, serial=SIGNALS, probe=2, kind="target", target=110, name="Flat 110")


def count(database: Database, model: type, *where: sa.ColumnElement[bool]) -> int:
    with database.session() as db:
        return int(db.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0)


def device_root(rig: Rig, serial: str) -> str:
    mqtt = rig.config.mqtt
    return f"{mqtt.base_topic}/{mqtt.instance_id}/device/{sanitize(serial)}"


def events(sub: Subscriber, rig: Rig) -> list[dict[str, object]]:
    topic = f"{device_root(rig, SIGNALS)}/event"
    return [m.json() for m in sub.snapshot() if m.topic == topic]


def test_a_cook_end_to_end(
    make_rig: MakeRig, subscriber: Subscriber, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rig = make_rig("brisket", **FAST)
    add_cook_alerts(rig)
    rig.run_for(3 * 3600)
    subscriber.sync()

    # Devices, probes and readings in the database; every reading once.
    with rig.database.session() as db:
        serials = set(db.scalars(sa.select(Device.device_id)))
        assert {SIGNALS, GATEWAY, MEAT_FLAT} <= serials
        assert db.scalar(sa.select(sa.func.count()).select_from(ProbeRow)) >= 13
        per_probe = db.execute(
            sa.select(
                ReadingRow.device_id,
                ReadingRow.probe,
                sa.func.count(),
                sa.func.max(ReadingRow.value),
            ).group_by(ReadingRow.device_id, ReadingRow.probe)
        ).all()
    pit = next(r for r in per_probe if r[0] == SIGNALS and r[1] == 1)
    assert pit[2] >= 150 and 225 < pit[3] < 260  # a reading a minute for 3 h, in °F
    assert not any(r[0] == SIGNALS and r[1] == 4 for r in per_probe)  # the empty channel
    assert rig.bridge.stats.cloud_errors == 0

    # One session running on the smoker.
    with rig.database.session() as db:
        cooks = db.scalars(
            sa.select(GrillingSession).where(GrillingSession.device_id == SIGNALS)
        ).all()
    assert [c.status for c in cooks] == ["active"]

    # Both alerts fired once, were published, and the outbox is empty.
    with rig.database.session() as db:
        fired = db.scalars(sa.select(AlertHistory).order_by(AlertHistory.id)).all()
    assert [(f.alert_name, f.event_type) for f in fired] == [
        ("Pit hot", "target_reached"),
        ("Flat 110", "target_reached"),
    ]
    assert all(f.published_at is not None for f in fired)
    published = events(subscriber, rig)
    assert [(e["name"], e["event_type"], e["probe"]) for e in published] == [
        ("Pit hot", "target_reached", 1),
        ("Flat 110", "target_reached", 2),
    ]
    assert all(not m.retain for m in subscriber.snapshot() if m.topic.endswith("/event"))
    # Each also on its probe's event topic, where that probe's device triggers listen.
    for channel, name in ((1, "Pit hot"), (2, "Flat 110")):
        topic = f"{device_root(rig, SIGNALS)}/probe/{channel}/event"
        on_probe = [m for m in subscriber.snapshot() if m.topic == topic]
        assert [(m.json(), m.qos) for m in on_probe] == [
            (next(e for e in published if e["name"] == name), 1)
        ]

    # Home Assistant sees every device, available, with live values.
    mqtt = rig.config.mqtt
    held = retained(mqtt.host, mqtt.port, f"{mqtt.base_topic}/#", f"{mqtt.discovery_prefix}/#")
    configs = [t for t in held if t.endswith("/config")]
    assert len(configs) >= 30
    assert held[f"{device_root(rig, SIGNALS)}/availability"] == b"online"
    assert held[f"{mqtt.base_topic}/{mqtt.instance_id}/status"] == b"online"
    # Both targets reached and the probes still above them: their alerts are active.
    probes = [json.loads(held[f"{device_root(rig, SIGNALS)}/probe/{n}"]) for n in (1, 2, 3)]
    assert [(p["target"], p["alert_active"]) for p in probes] == [
        (225.0, True),
        (110.0, True),
        (None, False),
    ]
    sid = sanitize(SIGNALS)
    for key in ("event/{m}/{s}_alerts", "number/{m}/{s}_p1_target"):
        assert key.format(m=mqtt.instance_id, s=sid) in "".join(configs)
    triggers = [t for t in configs if "/device_automation/" in t and sid in t]
    assert len(triggers) == 5 * 4  # five event types on each of the four channels

    healthy, report = rig.bridge.health_report()
    assert healthy and report["status"] == "ok"
    assert report["accounts"][0]["state"] == "ok" and report["accounts"][0]["mode"] == "active"
    assert report["database"]["pool"]["checked_out"] == 0

    # No secret anywhere: logs, broker, health.
    everything = "\n".join(r.getMessage() for r in caplog.records)
    everything += "\n".join(m.text for m in subscriber.snapshot())
    everything += json.dumps(report, default=str)
    assert_no_secret(everything, rig.cloud, "grill-password")


def test_restart_mid_cook_duplicates_nothing(make_rig: MakeRig, subscriber: Subscriber) -> None:
    rig = make_rig("brisket", **FAST)
    add_cook_alerts(rig)
    rig.run_for(2 * 3600)  # the pit alert has fired, the flat one not yet
    before = count(rig.database, ReadingRow)
    rig.restart()
    rig.run_for(1 * 3600)
    subscriber.sync()
    with rig.database.session() as db:
        cooks = db.scalars(
            sa.select(GrillingSession).where(GrillingSession.device_id == SIGNALS)
        ).all()
        fired = db.scalars(sa.select(AlertHistory)).all()
        dupes = db.execute(
            sa.select(ReadingRow.device_id, ReadingRow.probe, ReadingRow.time)
            .group_by(ReadingRow.device_id, ReadingRow.probe, ReadingRow.time)
            .having(sa.func.count() > 1)
        ).all()
    assert len(cooks) == 1 and cooks[0].status == "active"
    assert len(fired) == 2 and not dupes
    assert count(rig.database, ReadingRow) > before
    assert [e["name"] for e in events(subscriber, rig)] == ["Pit hot", "Flat 110"]


def test_account_linked_while_running_is_polled(make_rig: MakeRig) -> None:
    rig = make_rig("brisket", start=False, **FAST)
    # Unlink, start with nothing to poll, then link again: the daemon notices by itself.
    from grillstats_bridge.accounts import link_account, unlink_account
    from tests.fixtures.cloud import PITMASTER, PITMASTER_PASSWORD

    unlink_account(rig.database, USER)
    rig.bridge.start(threads=False)
    rig.run_for(120)
    assert rig.bridge.stats.polls == 0
    link_account(
        rig.database, rig.config, USER, PITMASTER_PASSWORD, tw_email=PITMASTER, clock=rig.cloud.now
    )
    rig.run_for(120)
    assert rig.bridge.stats.polls >= 1
    assert count(rig.database, ReadingRow) > 0


def test_pruning_keeps_only_the_retention(make_rig: MakeRig) -> None:
    rig = make_rig("kitchen_logger", storage={"retention_days": 1}, **FAST)
    old = rig.now - timedelta(days=3)
    with rig.database.transaction() as db:
        db.add(ReadingRow(device_id="old", probe=1, time=old, value=1.0, unit="F"))
    rig.run_for(600)
    assert count(rig.database, ReadingRow, ReadingRow.device_id == "old") == 0
    assert count(rig.database, ReadingRow) > 0


def test_dead_credentials_park_the_account_until_it_is_linked_again(make_rig: MakeRig) -> None:
    from grillstats_bridge.accounts import link_account
    from tests.fixtures.cloud import PITMASTER, PITMASTER_PASSWORD

    rig = make_rig("brisket", **FAST)
    # Linked without a stored password: a dead refresh token needs the owner.
    link_account(
        rig.database, rig.config, USER, PITMASTER_PASSWORD, tw_email=PITMASTER, clock=rig.cloud.now
    )
    rig.run_for(10 * 60)
    rig.cloud.revoke_refresh_tokens()
    rig.cloud.expire_tokens()
    rig.run_for(10 * 60)
    account = rig.bridge.scheduler.accounts[rig.user_id]
    assert account.state.value == "parked"
    asked = rig.cloud.request_count()
    rig.run_for(60 * 60)
    assert rig.cloud.request_count() == asked  # never retried in a loop
    healthy, report = rig.bridge.health_report()
    assert healthy  # the bridge works; one account needs its owner
    assert report["status"] == "degraded" and report["accounts"][0]["credentials"] == "needs_reauth"
    assert report["accounts"][0]["next_poll"] is None
    assert rig.bridge.bridge_status().accounts[0].reauth_needed

    link_account(
        rig.database, rig.config, USER, PITMASTER_PASSWORD, tw_email=PITMASTER, clock=rig.cloud.now
    )
    polls = rig.bridge.stats.polls
    rig.run_for(5 * 60)
    assert account.state.value == "ok" and rig.bridge.stats.polls > polls
    assert not rig.bridge.bridge_status().accounts[0].reauth_needed
