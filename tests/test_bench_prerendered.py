"""The pipeline benchmark's prerendered cloud: the real client gets the simulator's answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.pipeline import PASSWORD, START_H, build_scenario
from benchmarks.prerendered import (
    Answers,
    Layout,
    account_ids,
    prerendered_session,
    render,
    serial_accounts,
)
from grillstats_bridge.domain import Device
from grillstats_bridge.simulator.scenario import Scenario, parse_scenario
from grillstats_bridge.simulator.server import CloudSimulator
from grillstats_bridge.thermoworks.client import ThermoworksClient

SLOT = 15.0
START = START_H * 3600


@pytest.fixture
def scenario() -> Scenario:
    return parse_scenario(build_scenario(devices=3, per_account=2, hours=START_H + 1))


@pytest.fixture
def sim(scenario: Scenario) -> Iterator[CloudSimulator]:
    sim = CloudSimulator(scenario, speed=0, seed=1).start()
    sim.clock.set(START)
    yield sim
    sim.stop()


def _layout(scenario: Scenario) -> Layout:
    return Layout(emails=tuple(a.email for a in scenario.accounts), start=START, slot=SLOT, slots=3)


def _answers(scenario: Scenario, tmp_path: Path) -> Answers:
    layout = _layout(scenario)
    base = render(scenario, layout, tmp_path, digest="test")
    return Answers(base, layout, account_ids(scenario, layout.emails))


def _client(sim: CloudSimulator, email: str, **kwargs: Any) -> ThermoworksClient:
    client = ThermoworksClient(sim.endpoints(), timeout=5.0, email=email, **kwargs)
    client.sign_in(PASSWORD)
    return client


def _essentials(devices: tuple[Device, ...]) -> list[Any]:
    """What the bridge takes from a poll (the simulator's min/max scans may differ)."""
    return [
        (
            d.serial,
            d.label,
            d.last_telemetry_saved,
            sorted(
                (p.channel, p.label, p.value, p.unit, p.status, p.last_telemetry_saved)
                for p in d.probes
            ),
        )
        for d in devices
    ]


def test_the_client_reads_the_same_devices_as_over_http(
    scenario: Scenario, sim: CloudSimulator, tmp_path: Path
) -> None:
    answers = _answers(scenario, tmp_path)
    email = scenario.accounts[0].email
    sim.clock.set(START + SLOT)  # the start of slot 1, where the answers were rendered
    over_http = _client(sim, email, clock=sim.now)
    expected = over_http.poll().devices
    session = prerendered_session(
        answers, sim.clock.offset, sim.urls()["firestore_url"], serial_accounts(scenario)
    )
    client = _client(sim, email, clock=sim.now, session=session)
    try:
        client.poll()  # learns the channels: listed over HTTP
        before = sim.request_count("runQuery", "batchGet")
        served = answers.served
        devices = client.poll().devices
        assert answers.served == served + 2  # runQuery and batchGet, from the file
        assert sim.request_count("runQuery", "batchGet") == before
        assert _essentials(devices) == _essentials(expected)
        assert len(devices) == 2 and all(len(d.probes) == 4 for d in devices)
    finally:
        client.close()
        over_http.close()
        answers.close()


def test_the_slot_follows_the_clock(
    scenario: Scenario, sim: CloudSimulator, tmp_path: Path
) -> None:
    answers = _answers(scenario, tmp_path)
    email = scenario.accounts[1].email  # the account with one device
    session = prerendered_session(
        answers, sim.clock.offset, sim.urls()["firestore_url"], serial_accounts(scenario)
    )
    client = _client(sim, email, clock=sim.now, session=session)
    try:
        client.poll()
        seen = []
        for k in range(3):
            sim.clock.set(START + k * SLOT + 1)
            (device,) = client.poll().devices
            seen.append(device.last_telemetry_saved)
        sim.clock.set(START + 10 * SLOT)  # past the last slot: the last one stays
        (device,) = client.poll().devices
        assert device.serial == "BENCH000002"
        assert None not in seen
        assert seen[0] < seen[1] < seen[2]  # type: ignore[operator]  # a push every slot
        assert device.last_telemetry_saved == seen[2]
    finally:
        client.close()
        answers.close()


def test_rendering_is_cached_and_checked(scenario: Scenario, tmp_path: Path) -> None:
    layout = _layout(scenario)
    base = render(scenario, layout, tmp_path, digest="test")
    stamp = base.with_suffix(".bin").stat().st_mtime_ns
    assert render(scenario, layout, tmp_path, digest="test") == base
    assert base.with_suffix(".bin").stat().st_mtime_ns == stamp
    other = render(scenario, layout, tmp_path, digest="another scenario")
    assert other != base
    wrong = Layout(emails=layout.emails, start=START, slot=SLOT, slots=4)
    with pytest.raises(ValueError, match="offsets"):
        Answers(base, wrong, account_ids(scenario, layout.emails))


def test_rendering_in_several_processes_gives_the_same_file(
    scenario: Scenario, tmp_path: Path
) -> None:
    layout = _layout(scenario)
    one = render(scenario, layout, tmp_path / "one", digest="test")
    two = render(scenario, layout, tmp_path / "two", processes=2, digest="test")
    # batchGet answers are shuffled (Firestore promises no order): compare the runQuery ones.
    a = Answers(one, layout, account_ids(scenario, layout.emails))
    b = Answers(two, layout, account_ids(scenario, layout.emails))
    try:
        for email, account_id in account_ids(scenario, layout.emails).items():
            for k in range(layout.slots):
                t = START + k * SLOT
                assert a.answer(account_id, "runQuery", t) == b.answer(account_id, "runQuery", t)
                first = a.answer(account_id, "batchGet", t)
                assert first is not None and email
                assert len(first) == len(b.answer(account_id, "batchGet", t) or b"")
    finally:
        a.close()
        b.close()
