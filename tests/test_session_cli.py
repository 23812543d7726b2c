"""``session`` commands on SQLite and PostgreSQL: what they print, and their one-line errors."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest

from grillstats_bridge.cli import main
from grillstats_bridge.config import Config
from grillstats_bridge.sessions.service import SessionService
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import Device, GrillingSession, User
from grillstats_bridge.store.readings import write_readings
from tests.fixtures.cli import Cli
from tests.session_curves import CURVES, H, Simulation


@pytest.fixture
def devices(database: Database) -> None:
    with database.transaction() as db:
        cook = User(email="cook@example.com", password_hash="x")
        other = User(email="other@example.com", password_hash="x")
        db.add_all([cook, other])
        db.flush()
        db.add_all(
            [
                Device(user_id=cook.id, device_id="SIG-1"),
                Device(user_id=other.id, device_id="SIG-2"),
            ]
        )


def cook(database: Database) -> None:
    """A hot-and-fast cook run through the daemon's service, readings stored."""
    service = SessionService(Config().sessions)
    sim = Simulation(CURVES["hot_and_fast"], 60)
    while sim.poll_time <= CURVES["hot_and_fast"].duration:
        poll = sim.poll()
        with database.transaction() as db:
            write_readings(db, poll.readings)
            service.process(db, poll)


def test_start_list_show_end(cli: Cli, devices: None) -> None:
    code, out, _ = cli("session", "start", "SIG-1", "--name", "Ribs for the team")
    assert code == 0 and out == "started session 1 on SIG-1: Ribs for the team\n"
    code, out, _ = cli("session", "start", "SIG-2")
    assert code == 0 and out.startswith("started session 2 on SIG-2: Manual cook · ")

    code, out, _ = cli("session", "list")
    header, first, second = out.splitlines()
    assert header.split()[:6] == ["ID", "DEVICE", "USER", "TYPE", "STATUS", "START"]
    assert first.split()[:5] == ["2", "SIG-2", "other@example.com", "manual", "active"]
    assert second.split()[:5] == ["1", "SIG-1", "cook@example.com", "manual", "active"]

    code, out, _ = cli("session", "show", "1")
    assert code == 0
    assert "name:        Ribs for the team" in out and "status:      active" in out
    assert "no probe readings yet" in out
    assert "stall (UTC): -\n" in out

    code, out, _ = cli("session", "end", "1")
    assert code == 0 and out.startswith("ended session 1 on SIG-1: Ribs for the team (0 min")
    code, out, _ = cli("session", "cancel", "2")
    assert code == 0 and out.startswith("cancelled session 2 on SIG-2: ")

    code, out, _ = cli("session", "list", "cook@example.com", "--status", "completed")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["1"]
    code, out, _ = cli("session", "list", "--device", "SIG-2", "--status", "active,cancelled")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["2"]
    code, out, _ = cli("session", "list", "--status", "active")
    assert (code, out) == (0, "no sessions\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["session", "start", "NOPE"], "no device with serial 'NOPE'"),
        (["session", "end", "7"], "no session with id 7"),
        (["session", "cancel", "7"], "no session with id 7"),
        (["session", "show", "7"], "no session with id 7"),
        (["session", "export", "7"], "no session with id 7"),
        (["session", "list", "nobody@example.com"], "no user with email 'nobody@example.com'"),
        (["session", "list", "--device", "NOPE"], "no device with serial 'NOPE'"),
        (["session", "list", "--status", "done"], "unknown status 'done'"),
    ],
)
def test_what_does_not_exist_is_named(
    cli: Cli, devices: None, argv: list[str], message: str
) -> None:
    code, out, err = cli(*argv)
    assert code == 2 and out == ""
    assert err.startswith("grillstats-bridge: error: ") and err.count("\n") == 1
    assert message in err


def test_commands_that_do_not_fit_the_session_say_why(cli: Cli, devices: None) -> None:
    cli("session", "start", "SIG-1")
    code, _, err = cli("session", "start", "SIG-1")
    assert code == 2
    assert (
        err == "grillstats-bridge: error: device SIG-1 already has an active manual session (1)\n"
    )
    cli("session", "end", "1")
    code, _, err = cli("session", "end", "1")
    assert (code, err) == (2, "grillstats-bridge: error: session 1 is completed, not active\n")
    code, _, err = cli("session", "cancel", "1")
    assert (code, err) == (2, "grillstats-bridge: error: session 1 is completed, not active\n")


def test_bad_ids_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for bad, says in (("abc", "not a whole number: 'abc'"), ("0", "must be at least 1, got 0")):
        with pytest.raises(SystemExit) as exit_info:
            main(["session", "end", bad])
        assert exit_info.value.code == 2
        assert says in capsys.readouterr().err


def test_show_and_export_a_detected_cook(cli: Cli, devices: None, database: Database) -> None:
    cook(database)
    code, out, _ = cli("session", "show", "1")
    assert code == 0
    assert "type:        auto" in out and "status:      completed (cooled)" in out
    assert "length:      1 h 5" in out
    assert "stall (UTC): -\n" in out  # a hot and fast cook: none
    with database.transaction() as db:  # as the cook service stores one (tests/test_cook_service)
        row = db.get(GrillingSession, 1)
        assert row is not None
        row.stall_start = row.start_time + timedelta(minutes=20)
        row.stall_end = row.start_time + timedelta(minutes=50)
        row.stall_seconds = 1800.0
    _, shown, _ = cli("session", "show", "1")
    assert "stall (UTC): " in shown and "(30 min)\n" in shown
    table = out.split("\n\n", 1)[1].splitlines()
    assert table[0].split() == [
        "PROBE",
        "LABEL",
        "SAMPLES",
        "MIN",
        "MAX",
        "AVG",
        "COVERED",
        "LAST",
        "(UTC)",
    ]
    assert [row.split()[0] for row in table[1:]] == ["1", "2"]
    assert "°F" in table[1]

    code, out, err = cli("session", "export", "1", "--format", "csv")
    assert code == 0
    lines = list(csv.reader(io.StringIO(out)))
    assert lines[0] == ["time", "probe", "value", "unit"] and len(lines) > 200
    assert err == f"session 1: {len(lines) - 1} readings exported\n"

    code, out, _ = cli("session", "export", "1", "--format", "json")
    data = json.loads(out)
    assert data["session"]["type"] == "auto" and data["session"]["unit"] == "F"
    assert len(data["readings"]) == len(lines) - 1
    start = data["session"]["start"]
    assert data["readings"][0]["time"] == start
    assert data["session"]["duration_s"] > H
    assert data["session"]["stall_seconds"] == 1800.0 and data["session"]["stall_end"]


def test_a_session_started_by_hand_during_a_cook_becomes_manual(
    cli: Cli, devices: None, database: Database
) -> None:
    service = SessionService(Config().sessions)
    sim = Simulation(CURVES["hot_and_fast"], 60)
    while sim.poll_time <= 1 * H:
        with database.transaction() as db:
            service.process(db, sim.poll())
    code, out, _ = cli("session", "start", "SIG-1")
    assert code == 0
    assert out.startswith("session 1 on SIG-1 (running since ") and out.endswith(
        ") is now manual\n"
    )
    code, out, _ = cli("session", "list")
    assert out.splitlines()[1].split()[3:5] == ["manual", "active"]


def test_show_says_when_the_cook_was_done_and_how_many_past_cooks_calibrate_it(
    cli: Cli, devices: None, database: Database
) -> None:
    cook(database)
    with database.transaction() as db:  # as the cook service stores a ready probe's lesson
        first = db.get(GrillingSession, 1)
        assert first is not None and first.end_time is not None
        first.cook_probe, first.cook_target, first.cook_unit = 2, 165.0, "F"
        first.cook_done_at = first.end_time - timedelta(minutes=10)
        first.cook_pace, first.cook_climb_pace = 1.2, 0.7
        later = first.end_time + timedelta(days=1)
        for user_id in (first.user_id, first.user_id + 1):  # the owner's, then another user's
            db.add(
                GrillingSession(
                    user_id=user_id,
                    device_id=first.device_id,
                    status="completed",
                    start_time=later,
                    end_time=later + timedelta(hours=2),
                    cook_target=160.0,
                    cook_unit="F",
                )
            )
    _, shown, _ = cli("session", "show", "1")
    assert "done (UTC):  " in shown and "(probe 2 at 165 °F)\n" in shown
    assert "past cooks:  0 (target 165 °F)\n" in shown  # none before it
    _, shown, _ = cli("session", "show", "2")
    assert "done (UTC):  -\n" in shown
    assert "past cooks:  1 (target 160 °F): usual stall -, pace 1.10," in shown
    _, shown, _ = cli("session", "show", "3")
    assert "past cooks:  0 (target 160 °F)\n" in shown  # another user's cooks are not theirs
