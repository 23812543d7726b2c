"""The cook end to end: the daemon on the simulator's brisket, PostgreSQL (and SQLite), the
real broker; a target set from Home Assistant gives "done at", then a stall, on the topics."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from grillstats_bridge.store.models import GrillingSession
from tests.fixtures.bridge import MakeRig
from tests.fixtures.cloud import SIGNALS
from tests.fixtures.mqtt import Subscriber
from tests.test_alert_mqtt import FAST, last_state, probe_topic, send, target_alerts, until

H = 3600.0


def test_done_at_and_the_stall_reach_the_topics(make_rig: MakeRig, subscriber: Subscriber) -> None:
    rig = make_rig("brisket", at=4 * H, **FAST)  # brisket A stalls from about 4 h 30 m
    rig.run_for(60)
    flat = probe_topic(rig, 2)
    subscriber.wait_for_message(flat)
    send(rig, f"{flat}/target/set", b"203")
    until(rig, lambda: bool(target_alerts(rig, 2)), "the target alert")
    rig.run_for(20 * 60)
    state = last_state(subscriber, flat)
    assert state["target"] == 203.0
    assert isinstance(state["done_at"], str) and datetime.fromisoformat(state["done_at"]) > rig.now
    assert isinstance(state["time_to_target"], int) and state["time_to_target"] > 0
    assert state["done_low"] is not None and state["done_high"] is not None
    assert state["stalled"] is False and state["cook_state"] == "cooking"
    assert state["estimate_method"] == "newton"  # channel 1 is the pit

    rig.run_for(70 * 60)
    state = last_state(subscriber, flat)
    assert state["stalled"] is True and state["cook_state"] == "stalled"
    assert state["estimate_method"] == "stall" and state["stall_started"] is not None
    events = [m.json() for m in subscriber.snapshot() if m.topic == f"{flat}/event"]
    assert [e["event_type"] for e in events] == ["stall_started"]
    device = last_state(subscriber, flat.rsplit("/probe/", 1)[0])
    assert device["cook_state"] == "stalled"  # its least advanced probe with a target
    with rig.database.session() as db:
        started = db.scalars(
            sa.select(GrillingSession.stall_start).where(GrillingSession.device_id == SIGNALS)
        ).all()
    assert [s.isoformat() if s else None for s in started] == [state["stall_started"]]
