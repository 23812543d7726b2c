"""The daemon end to end: the simulator over HTTP, SQLite and PostgreSQL, the real broker.

Each test drives the bridge step by step on the simulator's clock (``make_rig``),
so hours of a cook take seconds and every run is the same; what the broker
received is read back by a real subscriber.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from grillstats_bridge.alerts.rules import add_alert
from grillstats_bridge.config import DatabaseConfig
from grillstats_bridge.ha.ids import sanitize
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import (
    AlertHistory,
    Device,
    GrillingSession,
    ProbeRow,
    ReadingRow,
)
from tests import ha_rules
from tests.fixtures.bridge import USER, MakeRig, Rig
from tests.fixtures.cloud import GATEWAY, MEAT_FLAT, SIGNALS, assert_no_secret
from tests.fixtures.mqtt import Received, Subscriber, retained

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
    """The alert firings on the smoker's event topic (the cook's events go there too)."""
    topic = f"{device_root(rig, SIGNALS)}/event"
    return [m.json() for m in sub.snapshot() if m.topic == topic and "firing_id" in m.json()]


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
        assert (db.scalar(sa.select(sa.func.count()).select_from(ProbeRow)) or 0) >= 13
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
        assert [(m.json(), m.qos) for m in on_probe if "firing_id" in m.json()] == [
            (next(e for e in published if e["name"] == name), 1)
        ]
        # and the cook's: the probe reached its target once (tests/test_cook_mqtt.py)
        assert [m.json()["event_type"] for m in on_probe if "firing_id" not in m.json()] == [
            "ready"
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
    # five alert event types on each of the four channels, three cook ones on the two targets
    assert len(triggers) == 5 * 4 + 3 * 2

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
    from grillstats_bridge.accounts.service import link_account
    from grillstats_bridge.store.accounts import unlink_account
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
    from grillstats_bridge.accounts.service import link_account
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
    assert report["accounts"][0]["health"] == "failing"
    assert "credentials refused" in report["accounts"][0]["reason"]
    assert rig.bridge.bridge_status().accounts[0].reauth_needed
    assert rig.bridge.bridge_status().accounts_failing == 1

    link_account(
        rig.database, rig.config, USER, PITMASTER_PASSWORD, tw_email=PITMASTER, clock=rig.cloud.now
    )
    polls = rig.bridge.stats.polls
    rig.run_for(5 * 60)
    assert account.state.value == "ok" and rig.bridge.stats.polls > polls
    assert not rig.bridge.bridge_status().accounts[0].reauth_needed


# ---------------------------------------------------------------------------- sessions in HA

KETTLE = "10:06:1C:3B:55:12"  # hot_and_fast's Smoke Gateway
# The kettle cools from 330 °F at 1 h 50 to 260 °F at 2 h 10: with the start at 300 °F
# (warm down to 280 °F) the cook ends within the scenario's 2 h 30.
KETTLE_COOK = {"sessions": {"start_min": 300.0, "end_after": 900.0}}
WAIT = 10.0


def session_root(rig: Rig, serial: str) -> str:
    return f"{device_root(rig, serial)}/session"


def session_events(sub: Subscriber, rig: Rig, serial: str) -> list[dict[str, Any]]:
    topic = f"{session_root(rig, serial)}/event"
    return [m.json() for m in sub.snapshot() if m.topic == topic]


def session_state(
    sub: Subscriber, rig: Rig, serial: str, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The device's latest session state, once it passes ``check`` (waited for, not polled)."""
    topic = session_root(rig, serial)

    def latest(messages: list[Received]) -> dict[str, Any] | None:
        mine = [m for m in messages if m.topic == topic and m.payload]
        return dict(mine[-1].json()) if mine else None

    def holds(messages: list[Received]) -> bool:
        state = latest(messages)
        return state is not None and check(state)

    state = latest(sub.wait_for(holds, what=f"the session state on {topic}"))
    assert state is not None
    return state


def press(sub: Subscriber, rig: Rig, serial: str, button: str, payload: str = "PRESS") -> None:
    """A Home Assistant button press: a plain QoS 1 message on the command topic."""
    sub._client.publish(f"{session_root(rig, serial)}/{button}/set", payload, qos=1)


def run_until(rig: Rig, condition: Callable[[], bool], what: str) -> None:
    """Step the bridge (its clock standing still) until an MQTT command has done its work."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        rig.bridge.step()
        time.sleep(0.01)  # the command is on its way from the broker


def sessions_of(rig: Rig, serial: str) -> list[GrillingSession]:
    with rig.database.session() as db:
        return list(
            db.scalars(
                sa.select(GrillingSession)
                .where(GrillingSession.device_id == serial)
                .order_by(GrillingSession.id)
            )
        )


def logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)


def test_an_automatic_session_in_home_assistant(make_rig: MakeRig, subscriber: Subscriber) -> None:
    rig = make_rig("hot_and_fast", **FAST, **KETTLE_COOK)
    assert rig.bridge.mqtt.wait_ready(WAIT)
    rig.run_for(10)
    assert rig.bridge.mqtt.flush(WAIT)

    # Discovery: the kettle's ten session entities, valid for HA, and all idle (unknown).
    mqtt = rig.config.mqtt
    held = retained(mqtt.host, mqtt.port, f"{mqtt.discovery_prefix}/#")  # QoS 1: all there
    configs = {t: v for t, v in held.items() if t.endswith("/config")}
    read = {
        p["state_topic"]
        for p in map(json.loads, configs.values())
        if "value_template" in p and "state_topic" in p  # not device triggers (a topic)
    }
    got = subscriber.wait_for(lambda ms: read <= {m.topic for m in ms}, what="every state")
    states = {m.topic: m.payload for m in got}  # the latest of each
    assert ha_rules.check_all(configs, states, mqtt.discovery_prefix) == []
    mine = [t for t in configs if f"{sanitize(KETTLE)}_session_" in t]
    assert len(mine) == 10
    idle = session_state(subscriber, rig, KETTLE, lambda s: True)
    assert idle["status"] == "idle"
    assert all(idle[k] is None for k in ("name", "start_time", "duration", "avg_temperature"))

    rig.run_for(40 * 60)
    (cook,) = sessions_of(rig, KETTLE)
    active = session_state(subscriber, rig, KETTLE, lambda s: 30 <= (s["duration"] or 0) <= 45)
    assert active["status"] == "active" and active["session_type"] == "auto"
    assert active["session_id"] == cook.id and active["name"] == cook.name
    assert active["start_time"] == cook.start_time.isoformat()
    assert 300 <= active["max_temperature"] <= 370  # °F, the pit
    assert active["min_temperature"] < active["avg_temperature"] < active["max_temperature"]

    rig.run_for(2 * 3600)  # the kettle cools
    (cook,) = sessions_of(rig, KETTLE)
    assert cook.status == "completed" and cook.end_published_at is not None
    session_state(subscriber, rig, KETTLE, lambda s: s["status"] == "idle")
    subscriber.sync()
    started, ended = session_events(subscriber, rig, KETTLE)
    assert (started["event_type"], started["session_id"]) == ("session_started", cook.id)
    assert started["event_id"] == f"session-{cook.id}-started"
    assert ended == {
        "event_type": "session_ended",
        "event_id": f"session-{cook.id}-ended",
        "session_id": cook.id,
        "device": KETTLE,
        "name": cook.name,
        "type": "auto",
        "status": "completed",
        "start": cook.start_time.isoformat(),
        "end": cook.end_time.isoformat() if cook.end_time else None,
        "duration_s": ended["duration_s"],
        "duration": ended["duration"],
        "min_temperature": cook.min_temperature,
        "max_temperature": cook.max_temperature,
        "avg_temperature": cook.avg_temperature,
        "unit": "°F",
        "end_reason": "cooled",
    }
    assert cook.end_time is not None
    assert ended["duration_s"] == round((cook.end_time - cook.start_time).total_seconds())
    assert 100 * 60 <= ended["duration_s"] <= 130 * 60 and ended["duration"].startswith("1 h ")
    assert not any(m.retain for m in subscriber.snapshot() if m.topic.endswith("/session/event"))


def test_buttons_start_and_end_a_manual_session(
    make_rig: MakeRig, subscriber: Subscriber, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rig = make_rig("brisket", **FAST)
    assert rig.bridge.mqtt.wait_ready(WAIT)
    rig.run_for(10)
    assert rig.bridge.mqtt.flush(WAIT)  # the bridge's subscriptions are in place

    press(subscriber, rig, SIGNALS, "start", '{"name": "Sunday brisket"}')
    run_until(rig, lambda: bool(sessions_of(rig, SIGNALS)), "the session")
    (cook,) = sessions_of(rig, SIGNALS)
    assert (cook.session_type, cook.status, cook.name) == ("manual", "active", "Sunday brisket")
    state = session_state(subscriber, rig, SIGNALS, lambda s: s["status"] == "active")
    assert (state["status"], state["session_type"], state["name"]) == (
        "active",
        "manual",
        "Sunday brisket",
    )
    assert state["session_id"] == cook.id and state["duration"] == 0

    # A second Start: a clear log line, nothing else.
    press(subscriber, rig, SIGNALS, "start")
    run_until(rig, lambda: logged(caplog, "Start session on"), "the refusal")
    assert logged(caplog, "already has an active manual session")
    assert len(sessions_of(rig, SIGNALS)) == 1

    rig.run_for(30 * 60)  # the pit heats: the manual session holds, no automatic one starts
    session_state(subscriber, rig, SIGNALS, lambda s: s["duration"] == 29)  # as of the last poll
    press(subscriber, rig, SIGNALS, "end")
    run_until(rig, lambda: sessions_of(rig, SIGNALS)[0].status != "active", "the end")
    (cook,) = sessions_of(rig, SIGNALS)
    assert (cook.status, cook.end_reason) == ("completed", "manual")
    session_state(subscriber, rig, SIGNALS, lambda s: s["status"] == "idle")

    # End again: nothing to end, said once in the log.
    press(subscriber, rig, SIGNALS, "end")
    run_until(rig, lambda: logged(caplog, "no active session to end"), "the refusal")
    assert rig.bridge.mqtt.flush(WAIT)
    rig.bridge.step()  # the acknowledgement marks the event published
    subscriber.sync()
    kinds = [
        (e["event_type"], e["type"], e["status"]) for e in session_events(subscriber, rig, SIGNALS)
    ]
    assert kinds == [
        ("session_started", "manual", "active"),
        ("session_ended", "manual", "completed"),
    ]
    assert sessions_of(rig, SIGNALS)[0].end_published_at is not None
    assert rig.bridge.stats.pipeline_errors == 0

    # A retained press (someone's mistake) would act at every restart: ignored.
    rig.bridge.shutdown()
    sent = subscriber._client.publish(f"{session_root(rig, SIGNALS)}/start/set", "PRESS", 1, True)
    sent.wait_for_publish(WAIT)  # held by the broker before the bridge subscribes again
    rig.restart()
    assert rig.bridge.mqtt.wait_ready(WAIT)
    run_until(rig, lambda: logged(caplog, "retained or empty message"), "the retained press")
    assert len(sessions_of(rig, SIGNALS)) == 1


@pytest.mark.parametrize("show", [False, True])
def test_health_names_no_account_unless_asked(make_rig: MakeRig, show: bool) -> None:
    rig = make_rig("brisket", http={"show_accounts": show})
    rig.run_for(10)
    _, report = rig.bridge.health_report()
    assert len(report["accounts"]) == 1
    text = json.dumps(report, default=str)
    (label,) = [a.label for a in rig.bridge.accounts.values()]  # the user's name
    if show:
        assert report["accounts"][0]["label"] == label
    else:
        assert "label" not in report["accounts"][0]
        assert label not in text and USER not in text


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_password_in_the_url_query_shows_nowhere(
    make_rig: MakeRig, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # PostgreSQL here trusts local connections, so the password is sent and ignored.
    url = make_url(pg_url).update_query_dict({"password": "hunter2-in-query"})
    database = Database(DatabaseConfig(url=url.render_as_string(hide_password=False)))
    caplog.set_level(logging.DEBUG)
    try:
        rig = make_rig("brisket", database_override=database)
        _, report = rig.bridge.health_report()
    finally:
        database.dispose()
    assert "?password=***" in report["database"]["url"]
    assert "hunter2" not in json.dumps(report, default=str)
    started = [r.getMessage() for r in caplog.records if " started: database " in r.getMessage()]
    assert started and "?password=***" in started[0]
    assert "hunter2" not in caplog.text
