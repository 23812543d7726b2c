"""The scenario format and the shipped scenarios' curves (pure: no HTTP)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

import pytest

from grillstats_bridge.domain import Unit
from grillstats_bridge.simulator.scenario import (
    KINDS,
    ScenarioError,
    list_scenarios,
    load_scenario,
    merge_scenarios,
    parse_duration,
    parse_scenario,
)

SIGNALS = "10:06:1C:6F:47:70"
GATEWAY = "10:06:1C:8A:21:04"
MEAT_B_POINT = "M100081210"
H = 3600.0


def test_every_shipped_scenario_loads_and_evaluates_every_channel() -> None:
    names = list_scenarios()
    assert {
        "brisket",
        "hot_and_fast",
        "kitchen_logger",
        "fridge_logger",
        "celsius_roast",
        "rough_night",
        # the cook predictor's library (benchmarks/eta.py)
        "pork_shoulder",
        "whole_chicken",
        "reverse_sear",
        "wrapped_brisket",
    } <= set(names)
    kinds: set[str] = set()
    units: set[Unit] = set()
    for name in names:
        scenario = load_scenario(name)
        assert scenario.accounts and scenario.devices
        for device in scenario.devices:
            kinds.add(device.kind)
            for channel in device.channels:
                units.add(channel.unit)
                sample = scenario.sample(device.serial, channel.number, scenario.duration / 2)
                assert sample.unit is channel.unit
    assert kinds == set(KINDS)  # every device type of the protocol document is simulated
    assert units == {Unit.FAHRENHEIT, Unit.CELSIUS, Unit.HUMIDITY}


def test_brisket_pit_holds_low_and_slow_with_two_lid_openings() -> None:
    s = load_scenario("brisket")
    pit = [(t, s.value(GATEWAY, 1, t)) for t in range(int(1.5 * H), int(12 * H), 60)]
    in_range = [v for _, v in pit if v is not None and 225 <= v <= 255]
    assert len(in_range) / len(pit) > 0.9
    # The spritz at 5 h: the pit falls by tens of degrees within two minutes, then recovers.
    before = s.value(GATEWAY, 1, 5 * H - 60)
    dipped = s.value(GATEWAY, 1, 5 * H + 60)
    after = s.value(GATEWAY, 1, 5 * H + 20 * 60)
    assert before is not None and dipped is not None and after is not None
    assert before - dipped > 40
    assert after > 225


def test_brisket_meat_rises_then_stalls_for_hours_then_finishes() -> None:
    s = load_scenario("brisket")
    flat = s.series(SIGNALS, 2, every=60, end=12 * H)
    values = [r.value for r in flat if r.value is not None]
    assert values[0] < 45 and max(values) > 200
    stalled = [r for r in flat if r.value is not None and 150 <= r.value <= 170]
    assert stalled[-1].time - stalled[0].time >= timedelta(hours=3.5)
    # Within the stall the meat moves slowly: less than 5 °F in any hour.
    mid = [r.value for r in stalled if r.value is not None and 5 * H <= s.offset(r.time) <= 7.5 * H]
    assert mid and max(mid) - min(mid) < 10


def test_unplugged_probe_reads_none_and_comes_back() -> None:
    s = load_scenario("brisket")
    assert s.value(SIGNALS, 3, 6 * H) is not None
    assert s.value(SIGNALS, 3, 6 * H + 15 * 60) is None
    assert s.sample(SIGNALS, 3, 6 * H + 15 * 60).connected is False
    assert s.value(SIGNALS, 3, 6 * H + 30 * 60) is not None
    assert s.value(SIGNALS, 4, 0) is None  # no probe in channel 4 at all
    assert all(r.value is None for r in s.series(SIGNALS, 4, every=600))


def test_offline_device_stops_pushing_and_resumes() -> None:
    s = load_scenario("brisket")
    during = [s.sample(MEAT_B_POINT, 1, 9 * H + m * 60).time for m in range(1, 19)]
    assert len(set(during)) == 1  # frozen at the last push before it went away
    assert during[0] <= s.time(9 * H)
    assert s.sample(MEAT_B_POINT, 1, 9 * H + 21 * 60).time > s.time(9 * H + 20 * 60)
    assert s.is_offline(MEAT_B_POINT, 9 * H + 60) and not s.is_offline(MEAT_B_POINT, 10 * H)


def test_series_holds_only_new_pushes_whatever_the_sampling() -> None:
    s = load_scenario("kitchen_logger")  # pushes every 10 minutes
    fine = s.series("10:06:1C:11:22:33", 1, every=15, end=2 * H)
    coarse = s.series("10:06:1C:11:22:33", 1, every=600, end=2 * H)
    assert [r.time for r in fine] == [r.time for r in coarse]
    gaps = {b.time - a.time for a, b in itertools.pairwise(fine)}
    assert gaps == {timedelta(minutes=10)}
    assert all(r.unit is Unit.FAHRENHEIT and 66 < (r.value or 0) < 78 for r in fine)


def test_series_is_deterministic() -> None:
    a = load_scenario("hot_and_fast").all_series(every=30)
    b = load_scenario("hot_and_fast").all_series(every=30)
    assert a == b


def test_fridge_humidity_stays_a_percentage() -> None:
    s = load_scenario("fridge_logger")
    humidity = s.series("10:06:1C:44:55:66", 2, every=300)
    assert all(r.unit is Unit.HUMIDITY and 0 <= (r.value or 0) <= 100 for r in humidity)
    temperature = s.series("10:06:1C:44:55:66", 1, every=300)
    assert max(r.value or 0 for r in temperature) > 40  # the long delivery at 9 h


def test_celsius_scenario_reports_celsius() -> None:
    s = load_scenario("celsius_roast")
    assert s.accounts[0].provider == "eti"
    lamb = s.series("10:06:1C:77:88:99", 2, every=60)
    assert all(r.unit is Unit.CELSIUS for r in lamb)
    assert 58 <= max(r.value or 0 for r in lamb) <= 64


def test_scenario_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "duration: 1h\n"
        "accounts: [{email: a@example.com, password: pw}]\n"
        "devices:\n"
        "  - serial: S1\n"
        "    account: a@example.com\n"
        "    kind: signals\n"
        "    transmit_interval: 30s\n"
        "    phase: 0\n"
        "    channels:\n"
        "      - {number: 1, curve: {points: [[0, 100], [1h, 200]], interpolation: linear}}\n"
    )
    s = load_scenario(path)
    assert s.name == "mine"
    assert s.value("S1", 1, 1800) == 150.0
    assert s.sample("S1", 1, 1815).time == s.time(1800)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("duration: 1h\naccounts: []\n", "accounts: at least one account"),
        (
            "duration: 1h\naccounts: [{email: a@x.com, password: p}]\n"
            "devices: [{serial: S, account: b@x.com, kind: signals}]\n",
            "devices[0].account: no account 'b@x.com'",
        ),
        (
            "duration: 1h\naccounts: [{email: a@x.com, password: p}]\n"
            "devices: [{serial: S, account: a@x.com, kind: toaster}]\n",
            "devices[0].kind: must be one of",
        ),
        (
            "duration: 1h\naccounts: [{email: a@x.com, password: p}]\n"
            "devices: [{serial: S, account: a@x.com, kind: signals,"
            " channels: [{number: 1, curve: pitt}]}]\n",
            "devices[0].channels[0].curve: unknown curve 'pitt'",
        ),
        (
            "duration: 1h\naccounts: [{email: a@x.com, password: p, colour: red}]\n",
            "accounts[0].colour: unknown key",
        ),
        (
            "duration: 1h\naccounts: [{email: a@x.com, password: p}]\n"
            "events: [{at: 5m, type: meteor}]\n",
            "events[0].type: unknown event 'meteor'",
        ),
        ("duration: soon\naccounts: [{email: a@x.com, password: p}]\n", "duration: must be a"),
        ("duration: 1h\naccounts: [{email: a@x.com, password: p}]\n: [\n", "mine.yaml: line"),
    ],
)
def test_bad_scenario_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=r"mine\.yaml") as info:
        load_scenario(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_scenario_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ScenarioError, match="shipped: brisket"):
        load_scenario("nope")


def test_merge_keeps_every_account_and_refuses_duplicates() -> None:
    merged = merge_scenarios(load_scenario("brisket"), load_scenario("fridge_logger"))
    assert {a.email for a in merged.accounts} == {"pitmaster@example.com", "deli@example.com"}
    assert len(merged.devices) == 5
    with pytest.raises(ScenarioError, match="appears twice"):
        merge_scenarios(load_scenario("brisket"), load_scenario("brisket"))


def test_durations() -> None:
    assert parse_duration("1h30m") == 5400
    assert parse_duration(90) == 90
    assert parse_duration("250ms") == 0.25
    with pytest.raises(ValueError):
        parse_duration("1:30")


def test_passwords_do_not_show_in_reprs() -> None:
    s = parse_scenario(
        {
            "duration": "1h",
            "accounts": [{"email": "a@x.com", "password": "hunter2-secret"}],
            "events": [
                {"at": 1, "type": "password_changed", "account": "a@x.com", "password": "p2-s3cr3t"}
            ],
        }
    )
    assert "hunter2-secret" not in repr(s)
    assert "p2-s3cr3t" not in repr(s)
