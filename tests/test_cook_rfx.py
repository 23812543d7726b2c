"""An RFX Meat probe heats toward its RFX Gateway's pit probe: the pure lookup and the tracker
on plain values, the cook service on SQLite and PostgreSQL (only the same user's gateway,
also after a restart), and the daemon on the simulator's brisket."""

from __future__ import annotations

from datetime import timedelta

import pytest

from grillstats_bridge.alerts.rules import add_alert
from grillstats_bridge.bridge.pipeline import Pipeline
from grillstats_bridge.config import CookConfig
from grillstats_bridge.cook.model import CookBatch, Estimate, Method
from grillstats_bridge.cook.pits import gateway_of, is_rfx_meat, pit_key
from grillstats_bridge.cook.service import CookService
from grillstats_bridge.cook.tracker import CookTracker
from grillstats_bridge.domain import Device, Measurement, Poll, Probe, Reading, Unit
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import TemperatureAlert, User
from tests.fixtures.bridge import USER, MakeRig
from tests.fixtures.mqtt import Subscriber
from tests.test_alert_mqtt import last_state
from tests.test_cook import MIN, RULES, T0, H, newton
from tests.test_cook_service import pipeline
from tests.test_daemon import FAST, device_root

GATEWAY = "10:06:1C:8A:21:04"
MEAT = "M100081209"
OTHER_GATEWAY = "10:06:1C:99:99:99"


def test_the_gateway_is_the_one_named_else_the_users_only_one() -> None:
    mine = {GATEWAY: "rfx gateway", "10:06:1C:6F:47:70": "signals"}
    assert gateway_of(GATEWAY.lower(), mine) == GATEWAY  # serials in any letter case
    assert gateway_of(None, mine) == GATEWAY  # not named: the user's only gateway
    assert gateway_of(OTHER_GATEWAY, mine) is None  # named, but not the user's: never
    assert gateway_of(None, {**mine, OTHER_GATEWAY: "RFX Gateway"}) is None  # which one?
    assert gateway_of(None, {"10:06:1C:6F:47:70": "signals"}) is None
    assert is_rfx_meat("rfx meat", "rfx") and is_rfx_meat(None, "bbq")  # an older probe
    assert not is_rfx_meat("rfx gateway", "rfx") and not is_rfx_meat("signals", "signals")
    assert pit_key(MEAT, 1) == (MEAT, 1) and pit_key(MEAT, (GATEWAY, 1)) == (GATEWAY, 1)
    assert pit_key(MEAT, None) is None


def test_a_probe_fits_newton_against_another_devices_pit() -> None:
    """The same readings: with the gateway's pit the fit is Newton's, without it linear."""

    def run(pits: dict[str, int | tuple[str, int]]) -> Estimate:
        tracker = CookTracker(RULES)
        targets = {(MEAT, 1): Measurement(203.0, Unit.FAHRENHEIT)}
        step = None
        for t in range(0, int(2 * H) + 1, int(MIN)):
            when = T0 + timedelta(seconds=t)
            batch = [
                Reading(serial=s, channel=1, time=when, value=v, unit=Unit.FAHRENHEIT)
                for s, v in ((MEAT, newton(t)), (GATEWAY, 250.0))
            ]
            step = tracker.step(CookBatch(now=when, readings=batch, targets=targets, pits=pits))
        assert step is not None
        (estimate,) = step.estimates
        return estimate

    relayed = run({MEAT: (GATEWAY, 1)})
    alone = run({})
    assert relayed.method is Method.NEWTON and alone.method is Method.LINEAR
    assert relayed.done_at is not None and alone.done_at is not None
    # Newton's law knows the meat slows toward the pit: later than the straight line.
    assert relayed.done_at > alone.done_at


# ---------------------------------------------------------------- the service


def rfx_poll(
    user_id: int, t: float, *, gateway: str = GATEWAY, named: bool = True, meat_too: bool = True
) -> Poll:
    """The meat probe (three of its points) and, on the same account, a gateway's air probe."""
    when = T0 + timedelta(seconds=t)
    meat = [
        Probe(serial=MEAT, channel=n, label=label, value=newton(t) + offset)
        for n, label, offset in ((1, "Tip", 0.0), (2, "Sensor 2", 3.0), (3, "Sensor 3", 8.0))
    ]
    air = [Probe(serial=gateway, channel=1, label="Grid Temperature", value=250.0)]
    devices: tuple[Device, ...] = (
        Device(
            serial=MEAT,
            type="rfx",
            model="rfx meat",
            last_seen=when,
            probes=tuple(meat),
            extra={"gatewaySerial": GATEWAY} if named else {},
        ),
        Device(serial=gateway, type="rfx", model="rfx gateway", last_seen=when, probes=tuple(air)),
    )
    if not meat_too:
        meat, devices = [], devices[1:]
    readings = tuple(
        Reading(serial=p.serial, channel=p.channel, time=when, value=p.value, unit=Unit.FAHRENHEIT)
        for p in (*meat, *air)
    )
    return Poll(user_id=user_id, polled_at=when, devices=devices, readings=readings)


def user(database: Database, email: str, *, target: bool) -> int:
    with database.transaction() as db:
        row = User(email=email, password_hash="x")
        db.add(row)
        db.flush()
        if target:
            db.add(
                TemperatureAlert(
                    user_id=row.id,
                    device_id=MEAT,
                    probe_id="1",
                    alert_type="target",
                    target_temperature=203.0,
                    temperature_unit="F",
                )
            )
        return row.id


def run(pipe: Pipeline, polls: list[Poll]) -> Estimate:
    for poll in polls:
        outcome = pipe.process([poll], poll.polled_at)
        assert outcome.database_ok and outcome.rejected == 0
    return pipe.cook.last[(MEAT, 1)]


@pytest.mark.parametrize("named", [True, False], ids=["gatewaySerial", "the only gateway"])
def test_an_rfx_meat_probe_uses_its_gateways_pit(database: Database, named: bool) -> None:
    cook = user(database, "cook@example.com", target=True)
    service = CookService(CookConfig())
    pipe = pipeline(database, service)
    polls = [rfx_poll(cook, t, named=named) for t in range(0, int(H) + 1, 120)]
    estimate = run(pipe, polls)
    assert service.pits[MEAT] == (GATEWAY, 1)
    assert estimate.method is Method.NEWTON

    # A restart rebuilds the meat probe's cook from stored readings, the gateway's too.
    again = CookService(CookConfig())
    estimate = run(pipeline(database, again), [rfx_poll(cook, H + 120, named=named)])
    assert again.pits[MEAT] == (GATEWAY, 1) and estimate.method is Method.NEWTON


def test_another_users_gateway_is_never_used(database: Database) -> None:
    """The meat probe names a gateway that another user owns: its own rate, linear."""
    cook = user(database, "cook@example.com", target=True)
    other = user(database, "other@example.com", target=False)
    service = CookService(CookConfig())
    pipe = pipeline(database, service)
    for t in range(0, int(H) + 1, 120):
        # the other user's account has the gateway the probe names; the cook has another
        for poll in (
            rfx_poll(other, t, gateway=GATEWAY, meat_too=False),
            rfx_poll(cook, t, gateway=OTHER_GATEWAY),
        ):
            assert pipe.process([poll], poll.polled_at).rejected == 0
    estimate = service.last[(MEAT, 1)]
    assert MEAT not in service.pits and estimate.method is Method.LINEAR


def test_through_the_daemon_the_simulators_rfx_probe_fits_against_its_gateway(
    make_rig: MakeRig, subscriber: Subscriber
) -> None:
    """The simulator's brisket over real HTTP: its RFX Meat probe names its gateway."""
    rig = make_rig("brisket", at=2 * H, **FAST)
    rig.run_for(60)  # the first poll registers the devices
    with rig.database.transaction() as db:
        add_alert(db, USER, serial=MEAT, probe=1, kind="target", target=203, name="B flat")
    rig.run_for(30 * 60)
    assert rig.bridge.pipeline.cook.pits[MEAT] == (GATEWAY, 1)  # "Grid Temperature"
    state = last_state(subscriber, f"{device_root(rig, MEAT)}/probe/1")
    assert state["target"] == 203.0 and state["estimate_method"] == "newton"
