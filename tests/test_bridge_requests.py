"""Requests over MQTT, end to end through Mosquitto: ``bridge/request/<action>`` answered
on ``bridge/response/<action>`` (transaction echoed), bad requests answered with one
error line and no traceback, and the retained ``bridge/info``."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tests.fixtures.bridge import USER, MakeRig, Rig
from tests.fixtures.cloud import SIGNALS
from tests.fixtures.mqtt import Subscriber, retained
from tests.test_alert_mqtt import send, until

pytestmark = pytest.mark.mqtt


def root(rig: Rig) -> str:
    return f"{rig.config.mqtt.base_topic}/{rig.config.mqtt.instance_id}"


def ask(rig: Rig, sub: Subscriber, action: str, body: Any, raw: bytes | None = None) -> Any:
    """Send one request and wait for its answer (the bridge runs its queued work)."""
    topic = f"{root(rig)}/bridge/response/{action}"
    sub.clear()
    send(
        rig,
        f"{root(rig)}/bridge/request/{action}",
        raw if raw is not None else json.dumps(body).encode(),
    )
    until(rig, lambda: any(m.topic == topic for m in sub.snapshot()), f"answer to {action}")
    (answer,) = [m for m in sub.snapshot() if m.topic == topic]
    assert not answer.retain
    return answer.json()


def test_health_alerts_and_sessions_by_request(make_rig: MakeRig, subscriber: Subscriber) -> None:
    rig = make_rig(at=3600.0)
    rig.run_for(10)  # the first poll: the devices exist
    health = ask(rig, subscriber, "health", {"transaction": "t-1"})
    assert health["status"] == "ok" and health["transaction"] == "t-1"
    assert health["data"]["version"] and "database" in health["data"]

    added = ask(
        rig,
        subscriber,
        "alerts/add",
        {
            "user": USER,
            "device": SIGNALS,
            "probe": 2,
            "type": "target",
            "target": 203,
            "transaction": 7,
        },
    )
    assert added["status"] == "ok" and added["transaction"] == 7
    assert added["data"]["condition"] == "≥ 203 °F"
    listed = ask(rig, subscriber, "alerts/list", {"user": USER})
    assert [a["id"] for a in listed["data"]["alerts"]] == [added["data"]["id"]]
    refused = ask(
        rig,
        subscriber,
        "alerts/add",
        {"user": USER, "device": SIGNALS, "probe": 2, "type": "range", "min": 300, "max": 200},
    )
    assert refused == {"status": "error", "error": "range: min (300) must be below max (200)"}
    removed = ask(rig, subscriber, "alerts/remove", {"id": added["data"]["id"]})
    assert removed == {"status": "ok", "data": {"id": added["data"]["id"]}}

    started = ask(rig, subscriber, "session/start", {"device": SIGNALS.lower(), "name": "Ribs"})
    assert started["status"] == "ok" and started["data"]["name"] == "Ribs"
    assert started["data"]["device"] == SIGNALS
    ended = ask(rig, subscriber, "session/end", {"device": SIGNALS})
    assert ended == {"status": "ok", "data": {"id": started["data"]["id"]}}
    again = ask(rig, subscriber, "session/end", {"device": SIGNALS})
    assert again == {"status": "error", "error": f"no active session on {SIGNALS}"}


def test_poll_now_makes_every_account_due(make_rig: MakeRig, subscriber: Subscriber) -> None:
    rig = make_rig(at=3600.0)
    rig.run_for(10)
    (account,) = rig.bridge.scheduler.accounts.values()
    assert account.next_poll > rig.now
    polls = rig.bridge.stats.polls
    assert ask(rig, subscriber, "poll", {}) == {"status": "ok", "data": {"accounts": 1}}
    rig.step()  # the clock stands still: only an account made due is polled
    assert rig.bridge.stats.polls == polls + 1
    assert account.next_poll > rig.now  # polled, and scheduled as usual again


@pytest.mark.parametrize(
    ("action", "raw", "error"),
    [
        ("health", b"{not json", "the request is not JSON"),
        ("health", b"[1, 2]", "the request must be a JSON object"),
        ("health", b"x" * 5000, "the request is over 4096 bytes"),
        ("reboot", b"{}", "unknown action 'reboot'"),
        ("alerts/remove", b'{"id": "one"}', "id: required, a whole number"),
        ("alerts/remove", b'{"id": 999}', "no alert with id 999"),
        ("session/start", b'{"device": "NOPE"}', "no device with serial 'NOPE'"),
        ("alerts/list", b'{"transaction": [1]}', "transaction: a string or a number"),
    ],
)
def test_a_malformed_request_gets_an_error_answer_and_no_traceback(
    make_rig: MakeRig,
    subscriber: Subscriber,
    caplog: pytest.LogCaptureFixture,
    action: str,
    raw: bytes,
    error: str,
) -> None:
    rig = make_rig(at=3600.0)
    rig.run_for(10)
    with caplog.at_level(logging.WARNING, logger="grillstats_bridge"):
        answer = ask(rig, subscriber, action, None, raw=raw)
    assert answer["status"] == "error" and answer["error"].startswith(error)
    assert "transaction" not in answer
    lines = [r for r in caplog.records if "MQTT request" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert "\n" not in lines[0].getMessage()


def test_bridge_info_is_retained_without_secrets(make_rig: MakeRig) -> None:
    rig = make_rig(at=3600.0, security={"encryption_key": "x" * 43 + "="})
    topic = f"{root(rig)}/bridge/info"
    assert rig.bridge.mqtt.flush(10)
    held = retained(rig.config.mqtt.host, rig.config.mqtt.port, topic)
    info = json.loads(held[topic])
    assert info["users"] == 1 and info["accounts"] == 1
    assert info["config"]["mqtt"]["instance_id"] == rig.config.mqtt.instance_id
    assert "x" * 43 not in held[topic].decode()


@pytest.fixture
def root_level() -> Any:
    level = logging.getLogger().level
    yield
    logging.getLogger().setLevel(level)


def test_the_poll_now_button_and_the_log_level_select(
    make_rig: MakeRig, subscriber: Subscriber, root_level: None
) -> None:
    rig = make_rig(at=3600.0)
    rig.run_for(10)
    polls = rig.bridge.stats.polls
    send(rig, f"{root(rig)}/bridge/poll/set", b"PRESS")
    until(rig, lambda: rig.bridge.stats.polls == polls + 1, "the poll Poll now asked for")

    state = f"{root(rig)}/bridge"
    logging.getLogger().setLevel(logging.INFO)
    subscriber.clear()
    send(rig, f"{root(rig)}/bridge/log_level/set", b"DEBUG")
    until(rig, lambda: logging.getLogger().level == logging.DEBUG, "the DEBUG level")
    shown = subscriber.wait_for(
        lambda ms: any(m.topic == state and m.json()["log_level"] == "DEBUG" for m in ms),
        what="the bridge state with the new level",
    )
    assert shown
    send(rig, f"{root(rig)}/bridge/log_level/set", b"LOUD")  # not a level: ignored
    send(rig, f"{root(rig)}/bridge/log_level/set", b"error")
    until(rig, lambda: logging.getLogger().level == logging.ERROR, "the ERROR level")
