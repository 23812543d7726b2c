"""``grillstats-bridge alert ...`` against the real databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from grillstats_bridge.alerts.rules import probe_methods
from grillstats_bridge.alerts.service import AlertService
from grillstats_bridge.cli import main
from grillstats_bridge.cli.alert_cmd import parse_since
from grillstats_bridge.config import AlertsConfig, Config
from grillstats_bridge.domain import Reading, Unit
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import AlertStateRow, Device, ReadingRow, TemperatureAlert
from grillstats_bridge.store.users import add_user

PIT = "pit@example.com"
OTHER = "other@example.com"
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def cli(config: Config, tmp_path: Path) -> tuple[Database, str]:
    """A migrated database with two users and their devices, and a config file pointing at it."""
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database": {"url": config.database.url},
                "security": {"key_file": config.security.key_file, "bcrypt_rounds": 4},
            }
        )
    )
    database = Database(config.database)
    with database.transaction() as session:
        pit = add_user(session, PIT, "correct horse battery", config.security)
        other = add_user(session, OTHER, "correct horse battery", config.security)
        session.add_all(
            [
                Device(user_id=pit.id, device_id="SIG1"),
                Device(user_id=other.id, device_id="SIG2"),
                # a Node: channel 1 in °C, channel 2 humidity
                Device(user_id=pit.id, device_id="NODE1"),
                ReadingRow(device_id="NODE1", probe=1, time=T0, value=21.5, unit="C"),
                ReadingRow(device_id="NODE1", probe=2, time=T0, value=55.0, unit="H"),
            ]
        )
    return database, str(path)


def run(
    cli: tuple[Database, str], capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    code = main(["--config", cli[1], *argv])
    out, err = capsys.readouterr()
    return code, out, err


def alerts(database: Database) -> list[TemperatureAlert]:
    with database.transaction() as session:
        return list(session.scalars(sa.select(TemperatureAlert).order_by(TemperatureAlert.id)))


def test_add_each_kind(cli: tuple[Database, str], capsys: pytest.CaptureFixture[str]) -> None:
    base = [PIT, "--device", "SIG1", "--probe", "1"]
    for extra, said in [
        (["--type", "target", "--target", "203", "--name", "Brisket"], "target ≥ 203 °F"),
        (["--type", "range", "--min", "225", "--max", "275"], "range 225–275 °F"),
        (["--type", "rising", "--threshold", "15", "--unit", "c"], "rising +15 °C"),
        (["--type", "falling", "--threshold", "20"], "falling -20 °F"),
    ]:
        code, out, err = run(cli, capsys, "alert", "add", *base, *extra)
        assert (code, err) == (0, "")
        assert said in out and "on SIG1 probe 1" in out

    rows = alerts(cli[0])
    assert [(a.id, a.alert_type, a.temperature_unit) for a in rows] == [
        (1, "target", "F"),
        (2, "range", "F"),
        (3, "rising", "C"),
        (4, "falling", "F"),
    ]
    first = rows[0]
    assert (first.user_id, first.device_id, first.probe_id, first.name) == (
        1,
        "SIG1",
        "1",
        "Brisket",
    )
    assert (first.target_temperature, first.min_temperature, first.max_temperature) == (
        203,
        None,
        None,
    )
    assert first.is_active is True and first.last_triggered is None
    assert (rows[1].min_temperature, rows[1].max_temperature) == (225, 275)
    assert rows[2].threshold_value == 15


def test_the_unit_defaults_to_the_probes_own(
    cli: tuple[Database, str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["alert", "add", PIT, "--device", "NODE1", "--probe", "1", "--type", "target"]
    code, out, _ = run(cli, capsys, *argv, "--target", "30")
    assert code == 0 and "≥ 30 °C" in out
    assert alerts(cli[0])[0].temperature_unit == "C"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--type", "range", "--min", "275", "--max", "225"], "range: min (275) must be below max"),
        (["--type", "range", "--min", "225", "--max", "225"], "range: min (225) must be below max"),
        (["--type", "range", "--min", "225"], "a range alert needs both a min and a max"),
        (["--type", "target"], "a target alert needs a target temperature"),
        (["--type", "rising", "--threshold", "0"], "threshold: must be greater than 0, got 0"),
        (["--type", "falling", "--threshold", "-5"], "threshold: must be greater than 0, got -5"),
        (["--type", "falling"], "a falling alert needs a threshold"),
        (["--type", "target", "--target", "nan"], "target: not a finite number"),
        (["--type", "target", "--target", "203", "--min", "1"], "min and max apply to range"),
        (["--type", "range", "--min", "1", "--max", "5", "--target", "3"], "a target temperature"),
        (["--type", "target", "--target", "203", "--threshold", "5"], "a threshold applies"),
        (["--type", "target", "--target", "203", "--name", "x" * 101], "name: at most 100"),
    ],
)
def test_add_refuses_invalid_combinations(
    cli: tuple[Database, str], capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(
        cli, capsys, "alert", "add", PIT, "--device", "SIG1", "--probe", "1", *argv
    )
    assert code == 2
    assert out == ""
    assert err.startswith("grillstats-bridge: error: ") and message in err
    assert err.count("\n") == 1
    assert alerts(cli[0]) == []


@pytest.mark.parametrize(
    ("user", "device", "probe", "message"),
    [
        (PIT, "NOPE", "1", "no device with serial 'NOPE'"),
        (PIT, "SIG2", "1", "device SIG2 belongs to another user, not pit@example.com"),
        ("nobody@example.com", "SIG1", "1", "no user with email 'nobody@example.com'"),
        (PIT, "SIG1", "0", "probe: must be 1 to 9, got 0"),
        (PIT, "SIG1", "10", "probe: must be 1 to 9, got 10"),
        (PIT, "NODE1", "2", "device NODE1 probe 2 measures humidity"),
    ],
)
def test_add_refuses_unknown_or_foreign_devices_and_probes(
    cli: tuple[Database, str],
    capsys: pytest.CaptureFixture[str],
    user: str,
    device: str,
    probe: str,
    message: str,
) -> None:
    argv = ["--device", device, "--probe", probe, "--type", "target", "--target", "203"]
    code, _, err = run(cli, capsys, "alert", "add", user, *argv)
    assert code == 2 and message in err
    assert alerts(cli[0]) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--type", "ramp"],
        ["--type", "target", "--target", "203", "--unit", "K"],
        ["--type", "target", "--target", "hot"],
    ],
)
def test_add_argument_errors(
    cli: tuple[Database, str], capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--config", cli[1], "alert", "add", PIT, "--device", "SIG1", "--probe", "1", *argv])
    assert info.value.code == 2
    assert "error: alert add: argument" in capsys.readouterr().err


def test_list_enable_disable_remove(
    cli: tuple[Database, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(cli, capsys, "alert", "list")
    assert (code, out) == (
        0,
        "no alerts yet: add one with 'grillstats-bridge alert add USER_EMAIL ...'\n",
    )
    database, _ = cli
    common = ["--probe", "1", "--type", "range", "--min", "225", "--max", "275"]
    run(cli, capsys, "alert", "add", PIT, "--device", "SIG1", *common, "--name", "Pit")
    run(cli, capsys, "alert", "add", OTHER, "--device", "SIG2", *common)

    code, out, _ = run(cli, capsys, "alert", "list")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3
    assert lines[0].split()[:5] == ["ID", "USER", "DEVICE", "PROBE", "TYPE"]
    assert lines[1].split()[:9] == [
        "1",
        PIT,
        "SIG1",
        "1",
        "range",
        "225–275",
        "°F",
        "Pit",
        "enabled",
    ]
    assert "high armed, low waiting inside" in lines[1]
    code, out, _ = run(cli, capsys, "alert", "list", OTHER)
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["2"]

    # the daemon judged a few readings: the list shows the saved arming state
    service = AlertService(AlertsConfig(cooldown=0))
    with database.transaction() as session:
        batch = [
            Reading(
                serial="SIG1",
                channel=1,
                time=T0 + timedelta(seconds=s),
                value=v,
                unit=Unit.FAHRENHEIT,
            )
            for s, v in [(0, 240), (15, 280)]
        ]
        assert len(service.process(session, batch, now=T0 + timedelta(seconds=15))) == 1
    _, out, _ = run(cli, capsys, "alert", "list", PIT)
    assert "high fired, low armed" in out and "2026-06-01 12:00:15" in out

    assert run(cli, capsys, "alert", "disable", "1")[1] == "disabled alert 1\n"
    _, out, _ = run(cli, capsys, "alert", "list", PIT)
    assert "disabled" in out.splitlines()[1]
    with database.transaction() as session:
        assert session.get(AlertStateRow, 1) is None  # re-enabled, it starts afresh
    assert run(cli, capsys, "alert", "enable", "1")[1] == "enabled alert 1\n"
    assert alerts(database)[0].is_active is True
    assert run(cli, capsys, "alert", "remove", "2")[1] == "removed alert 2\n"
    assert [a.id for a in alerts(database)] == [1]
    for command in ("enable", "disable", "remove"):
        code, _, err = run(cli, capsys, "alert", command, "99")
        assert code == 2 and "no alert with id 99" in err


def test_history(cli: tuple[Database, str], capsys: pytest.CaptureFixture[str]) -> None:
    database, _ = cli
    code, out, _ = run(cli, capsys, "alert", "history")
    assert (code, out) == (0, "no alert has fired\n")
    run(
        cli,
        capsys,
        "alert",
        "add",
        PIT,
        "--device",
        "SIG1",
        "--probe",
        "1",
        "--type",
        "target",
        "--target",
        "203",
        "--name",
        "Brisket",
    )
    run(
        cli,
        capsys,
        "alert",
        "add",
        OTHER,
        "--device",
        "SIG2",
        "--probe",
        "2",
        "--type",
        "target",
        "--target",
        "95",
        "--unit",
        "C",
    )
    service = AlertService(AlertsConfig(cooldown=0, max_age=0))
    days = [T0 - timedelta(days=3), T0 - timedelta(hours=1)]
    for day in days:
        with database.transaction() as session:
            batch = [
                Reading(serial=serial, channel=ch, time=day + timedelta(seconds=s), value=v, unit=u)
                for serial, ch, u, values in [
                    ("SIG1", 1, Unit.FAHRENHEIT, [150, 204]),
                    ("SIG2", 2, Unit.FAHRENHEIT, [150, 205]),
                ]
                for s, v in zip((0, 30), values, strict=True)
            ]
            assert len(service.process(session, batch, now=day)) == 2
    with database.transaction() as session:
        service.mark_published(session, [1, 2], at=T0 - timedelta(days=2))

    code, out, _ = run(cli, capsys, "alert", "history")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 5
    assert lines[1].split() == [
        "2026-05-29",
        "12:00:30",
        "1",
        "Brisket",
        PIT,
        "SIG1",
        "1",
        "target_reached",
        "204",
        "°F",
        "203",
        "°F",
        "2026-05-30",
        "12:00:00",
    ]
    assert lines[2].split()[7:13] == ["target_reached", "96.11", "°C", "95", "°C", "2026-05-30"]
    assert lines[4].split()[-1] == "pending"

    _, out, _ = run(cli, capsys, "alert", "history", PIT)
    assert [line.split()[4] for line in out.splitlines()[1:]] == [PIT, PIT]
    _, out, _ = run(cli, capsys, "alert", "history", "--since", "2026-05-31")
    assert len(out.splitlines()) == 3
    _, out, _ = run(cli, capsys, "alert", "history", "--limit", "1")
    assert out.splitlines()[1].split()[4] == OTHER
    _, out, _ = run(cli, capsys, "alert", "history", "--since", "2026-06-02T00:00Z")
    assert out == "no alert has fired in that period\n"
    # removing an alert keeps its history
    run(cli, capsys, "alert", "remove", "1")
    _, out, _ = run(cli, capsys, "alert", "history", PIT)
    assert len(out.splitlines()) == 3
    code, _, err = run(cli, capsys, "alert", "history", "--limit", "0")
    assert code == 2 and "--limit: must be at least 1" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", T0 - timedelta(minutes=90)),
        ("12h", T0 - timedelta(hours=12)),
        ("3d", T0 - timedelta(days=3)),
        ("1w", T0 - timedelta(weeks=1)),
        ("2026-05-30", datetime(2026, 5, 30, tzinfo=UTC)),
        ("2026-05-30T18:30", datetime(2026, 5, 30, 18, 30, tzinfo=UTC)),
        ("2026-05-30T18:30Z", datetime(2026, 5, 30, 18, 30, tzinfo=UTC)),
        ("2026-05-30T20:30+02:00", datetime(2026, 5, 30, 18, 30, tzinfo=UTC)),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    assert parse_since(text, now=T0) == expected


def test_parse_since_refuses_nonsense(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["alert", "history", "--since", "yesterday"])
    assert info.value.code == 2
    assert "not a date, a time or an age: 'yesterday'" in capsys.readouterr().err


def test_a_target_alerts_cook_method_is_stored_and_read_back(
    cli: tuple[Database, str], capsys: pytest.CaptureFixture[str]
) -> None:
    base = [PIT, "--device", "SIG1", "--probe", "1"]
    assert run(cli, capsys, "alert", "add", *base, "--type", "target", "--target", "130")[0] == 0
    assert run(cli, capsys, "alert", "add", *base, "--type", "rising", "--threshold", "15")[0] == 0
    code, out, err = run(cli, capsys, "alert", "method", "1", "reverse_sear")
    assert (code, err) == (0, "") and "cook method reverse_sear" in out
    with cli[0].transaction() as session:
        assert probe_methods(session) == {("SIG1", 1): "reverse_sear"}
    code, out, err = run(cli, capsys, "alert", "method", "2", "reverse_sear")
    assert code == 2 and err.count("\n") == 1 and "a cook method goes on a target" in err
    with pytest.raises(SystemExit):  # argparse's own refusal
        run(cli, capsys, "alert", "method", "1", "sous_vide")
    assert "invalid choice: 'sous_vide'" in capsys.readouterr().err
    assert run(cli, capsys, "alert", "method", "1", "auto")[0] == 0
    with cli[0].transaction() as session:
        assert probe_methods(session) == {}
        assert session.get(TemperatureAlert, 1).cook_method is None  # type: ignore[union-attr]
