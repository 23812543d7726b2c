"""Configuration and command mistakes are caught: duplicate keys, serials in any case,
temperatures no probe reads, and a check-config that changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from grillstats_bridge.alerts.rules import readable_range
from grillstats_bridge.cli import main
from grillstats_bridge.config import Config, ConfigError, load_config
from grillstats_bridge.domain import Unit
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import Device, GrillingSession, TemperatureAlert
from grillstats_bridge.store.users import add_user

PIT = "pit@example.com"
SERIAL = "10:06:1C:6F:47:AB"

Run = Callable[..., tuple[int, str, str]]

# ------------------------------------------------------------------ duplicate keys


@pytest.mark.parametrize(
    ("text", "key", "line", "first"),
    [
        ("database:\n  url: sqlite:///a.db\n  pool_size: 3\n  url: sqlite:///b.db\n", "url", 4, 2),
        ("mqtt:\n  host: a\ndatabase: {}\nmqtt:\n  port: 1\n", "mqtt", 4, 1),
        ("mqtt: {port: 1, port: 2}\n", "port", 1, 1),
    ],
    ids=["in-a-section", "a-section", "flow-mapping"],
)
def test_a_duplicate_key_names_the_key_and_both_lines(
    text: str, key: str, line: int, first: int, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == (
        f"{path}: line {line}: duplicate key {key!r} (first given on line {first})"
    )


def test_a_merge_key_may_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "mqtt: &broker\n  host: broker.lan\n  port: 1884\n"
        "database:\n  url: sqlite:///x.db\n"
        "http:\n  port: 8100\n  <<: {enabled: false, port: 9000}\n"
    )
    config = load_config(path, environ={})
    assert (config.http.port, config.http.enabled) == (8100, False)


def test_a_duplicate_key_stops_a_command_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("mqtt:\n  port: 1883\n  port: 1884\n")
    assert main(["--config", str(path), "config", "show"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"grillstats-bridge: error: configuration: {path}: line 3: "
        "duplicate key 'port' (first given on line 2)"
    ]


# ------------------------------------------------------------------ check-config changes nothing


@pytest.mark.parametrize("state_dir", ["missing", "empty"])
def test_check_config_creates_no_database_file_nor_its_directory(
    state_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    if state_dir == "empty":
        state.mkdir()
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database": {"url": f"sqlite:///{state / 'grillstats.db'}"},
                "security": {"key_file": str(state / "grillstats.key")},
                "mqtt": {"host": "127.0.0.1", "port": 1},
            }
        )
    )
    assert main(["--config", str(path), "check-config"]) == 1
    out, err = capsys.readouterr()
    assert "database: FAIL" in out and "no such file" in out and "db upgrade" in out
    assert err.splitlines() == ["grillstats-bridge: error: 2 check(s) failed: database, mqtt"]
    assert state.exists() == (state_dir == "empty")
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["config.yaml", *(["state"] if state_dir == "empty" else [])]
    )


# ------------------------------------------------------------------ serials in any case


@pytest.fixture
def run(config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    """A migrated database with a user and a device; main() against it."""
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
    try:
        with database.transaction() as session:
            user = add_user(session, PIT, "correct horse battery", config.security)
            session.add(Device(user_id=user.id, device_id=SERIAL))
    finally:
        database.dispose()

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["--config", str(path), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.mark.parametrize("typed", [SERIAL.lower(), f"  {SERIAL.lower()} ", SERIAL])
def test_every_command_takes_a_serial_in_any_case(typed: str, run: Run, database: Database) -> None:
    code, out, err = run("devices", "rename", typed, "Smoker")
    assert (code, err) == (0, "")
    assert f"{SERIAL} is now called 'Smoker'" in out

    code, out, err = run(
        "alert",
        "add",
        PIT,
        "--device",
        typed,
        "--probe",
        "1",
        "--type",
        "target",
        "--target",
        "203",
    )
    assert (code, err) == (0, "")
    assert f"on {SERIAL} probe 1" in out

    code, out, err = run("session", "start", typed, "--name", "Brisket")
    assert (code, err) == (0, "")
    assert f"on {SERIAL}: Brisket" in out

    code, out, err = run("session", "list", "--device", typed)
    assert (code, err) == (0, "")
    assert SERIAL in out and "Brisket" in out

    with database.transaction() as session:
        assert session.scalars(sa.select(TemperatureAlert.device_id)).all() == [SERIAL]
        assert session.scalars(sa.select(GrillingSession.device_id)).all() == [SERIAL]
        assert session.scalars(sa.select(Device.nickname)).all() == ["Smoker"]


def test_an_unknown_serial_is_still_refused(run: Run) -> None:
    for argv in (
        ["devices", "rename", "10:06:1C:6F:47:AC", "x"],
        ["alert", "add", PIT, "--device", "10:06:1c:6f:47:ac", "--probe", "1", "--type", "target"],
        ["session", "start", "10:06:1c:6f:47:ac"],
    ):
        code, _, err = run(*argv)
        assert code == 2
        assert "no device with serial '10:06:1" in err.lower()


# ------------------------------------------------------------------ temperatures a probe reads


def test_the_readable_range_is_home_assistants_in_each_unit() -> None:
    assert readable_range(Unit.FAHRENHEIT) == (-100.0, 1000.0)
    assert readable_range(Unit.CELSIUS) == (-73.3, 537.7)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--type", "target", "--target", "1001"], "target: 1001 °F is outside"),
        (["--type", "target", "--target", "-100.1"], "target: -100.1 °F is outside"),
        (["--type", "range", "--min", "-150", "--max", "300"], "min: -150 °F is outside"),
        (["--type", "range", "--min", "200", "--max", "5000"], "max: 5000 °F is outside"),
        (["--type", "target", "--target", "600", "--unit", "C"], "target: 600 °C is outside"),
        (["--type", "range", "--min", "-80", "--max", "100", "--unit", "C"], "min: -80 °C"),
    ],
)
def test_alert_temperatures_no_probe_reads_are_refused(
    values: list[str], message: str, run: Run, database: Database
) -> None:
    code, out, err = run("alert", "add", PIT, "--device", SERIAL, "--probe", "1", *values)
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert message in line
    unit = "°C" if "C" in values else "°F"
    allowed = "(-73.3 to 537.7 °C)" if unit == "°C" else "(-100 to 1000 °F)"
    assert line.endswith(f"is outside what a probe reads {allowed}")
    with database.transaction() as session:
        assert session.scalars(sa.select(TemperatureAlert)).all() == []


@pytest.mark.parametrize(
    "values",
    [
        ["--type", "target", "--target", "1000"],
        ["--type", "range", "--min", "-100", "--max", "1000"],
        ["--type", "target", "--target", "537.7", "--unit", "C"],
        ["--type", "range", "--min", "-73.3", "--max", "0", "--unit", "C"],
    ],
)
def test_the_bounds_themselves_are_accepted(values: list[str], run: Run) -> None:
    code, _, err = run("alert", "add", PIT, "--device", SERIAL, "--probe", "1", *values)
    assert (code, err) == (0, "")


@pytest.mark.parametrize("url", ["grill.local:8099", "ftp://grill.local/", "https:// x"])
def test_a_public_url_that_is_not_http_is_one_line(url: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"http:\n  public_url: '{url}'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == f"http.public_url: an http:// or https:// address, got {url!r}"
    path.write_text("http:\n  public_url: 'https://grill.example.com/bridge/'\n")
    assert load_config(path, environ={}).http.public_url == "https://grill.example.com/bridge/"
