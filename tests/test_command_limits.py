"""Bad MQTT commands against the whole bridge (real Mosquitto, the simulator, a database):
each is refused with one short warning and no traceback, and the bridge goes on; the
command handlers themselves are fuzzed with Hypothesis."""

from __future__ import annotations

import logging
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grillstats_bridge.bridge import daemon, work
from grillstats_bridge.mqtt.client import MAX_INBOUND_BYTES
from grillstats_bridge.mqtt.messages import InboundMessage
from tests.fixtures.bridge import MakeRig, Rig
from tests.fixtures.mqtt import WAIT, Subscriber
from tests.test_alert_mqtt import FAST, SID, probe_topic, send, target_alerts, until
from tests.test_commands import PAYLOAD, ROOT, TOPIC

pytestmark = pytest.mark.mqtt

HANDLERS = ("grillstats_bridge.alerts.entities", "grillstats_bridge.sessions.entities")


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING
        and (r.name in HANDLERS or r.name.startswith("grillstats_bridge.mqtt"))
    ]


def session_topic(rig: Rig, button: str) -> str:
    mqtt = rig.config.mqtt
    return f"{mqtt.base_topic}/{mqtt.instance_id}/device/{SID}/session/{button}/set"


def test_bad_commands_are_refused_in_one_line_each(
    make_rig: MakeRig, subscriber: Subscriber, caplog: pytest.LogCaptureFixture
) -> None:
    rig = make_rig("brisket", **FAST)
    rig.run_for(10)
    subscriber.wait_for_message(probe_topic(rig, 2))  # the bridge has subscribed by now
    target = f"{probe_topic(rig, 2)}/target/set"
    device = probe_topic(rig, 2).rsplit("/probe/", 1)[0]
    bad = [
        (target, b"1" * 300_000),  # over the command limit
        (target, b"nan"),
        (target, b"inf"),
        (target, b"1_000"),
        (target, "２０３".encode()),
        (f"{device}/probe/²/target/set", b"200"),
        (f"{device}/probe/{'9' * 5000}/target/set", b"200"),
        (session_topic(rig, "start"), b"{" * 10_000),
    ]
    caplog.set_level(logging.INFO)
    for topic, payload in bad:
        send(rig, topic, payload)
    send(rig, target, b"203")  # then a good one: handled after every bad one
    until(rig, lambda: bool(target_alerts(rig, 2)), "the good command")
    lines = [r.getMessage() for r in refusals(caplog)]
    assert len(lines) == len(bad), lines
    assert all(len(line) < 400 and "\n" not in line for line in lines), lines
    assert not [r for r in caplog.records if r.exc_info]  # no traceback
    assert "300000 bytes, over the limit of 256" in lines[0]
    assert "not a probe number: '²'" in lines[5]
    assert [a[1] for a in target_alerts(rig, 2)] == [203.0]
    assert rig.bridge.stats.pipeline_errors == 0


def test_a_huge_command_never_reaches_the_handlers(
    make_rig: MakeRig, subscriber: Subscriber, caplog: pytest.LogCaptureFixture
) -> None:
    rig = make_rig("brisket", **FAST)
    rig.run_for(10)
    subscriber.wait_for_message(probe_topic(rig, 2))
    target = f"{probe_topic(rig, 2)}/target/set"
    caplog.set_level(logging.INFO)
    send(rig, target, b"2" * (5 * MAX_INBOUND_BYTES))
    send(rig, target, b"203")
    until(rig, lambda: bool(target_alerts(rig, 2)), "the good command")
    [line] = [r.getMessage() for r in refusals(caplog)]
    assert "inbound queue full" in line and len(line) < 400
    assert rig.bridge.mqtt.health().inbound_dropped == 1


def test_the_command_handlers_never_raise(make_rig: MakeRig) -> None:
    """What the daemon's handlers get, straight from Hypothesis: nothing escapes them."""
    rig = make_rig("brisket", **FAST)
    rig.run_for(10)  # devices and probes in the database: commands get as far as they can
    root = rig.bridge.publisher.naming.root

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(topic=TOPIC, payload=PAYLOAD, retain=st.booleans())
    def fuzz(topic: str, payload: bytes, retain: bool) -> None:
        for where in (topic, topic.replace(ROOT, root, 1)):
            message = InboundMessage(topic=where, payload=payload, retain=retain, qos=1)
            rig.bridge.alert_control.handle(message)
            rig.bridge.session_mqtt.start_pressed(message)
            rig.bridge.session_mqtt.end_pressed(message)

    fuzz()
    assert rig.bridge.stats.pipeline_errors == 0


def test_commands_waiting_for_the_pipeline_are_bounded(
    make_rig: MakeRig,
    subscriber: Subscriber,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flood while the pipeline is busy: a bounded number wait, the rest are dropped."""
    monkeypatch.setattr(daemon, "MAX_PENDING_COMMANDS", 5)
    monkeypatch.setattr(work, "COMMAND_WAIT_S", 0.01)
    rig = make_rig("brisket", **FAST)
    rig.run_for(10)
    subscriber.wait_for_message(probe_topic(rig, 2))
    target = f"{probe_topic(rig, 2)}/target/set"
    caplog.set_level(logging.INFO)
    for value in range(201, 211):  # the pipeline runs nothing meanwhile (no step)
        send(rig, target, str(value).encode())
    deadline = time.monotonic() + WAIT
    while len(dropped := [r for r in caplog.records if "dropped" in r.getMessage()]) < 5:
        assert time.monotonic() < deadline, "the flood was not dropped"
        time.sleep(0.01)  # the broker is still delivering: nothing to wait on
    until(rig, lambda: [a[1] for a in target_alerts(rig, 2)] == [205.0], "the first five")
    assert len(dropped) == 5 and "the pipeline is busy" in dropped[0].getMessage()
    send(rig, target, b"222")  # room again
    until(rig, lambda: [a[1] for a in target_alerts(rig, 2)] == [222.0], "a command after it")
