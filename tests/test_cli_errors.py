"""Every command, under every fault it can meet, ends in one line on stderr, never a traceback.

The commands are read from the CLI's own parser, so a new one is covered at once;
it only needs its required arguments in :data:`ARGS` (a test fails until it has).
"""

from __future__ import annotations

import argparse
import io
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from grillstats_bridge.cli import build_parser, main
from grillstats_bridge.config import DatabaseConfig
from grillstats_bridge.simulator.server import CloudSimulator
from grillstats_bridge.store import migrate, revisions
from grillstats_bridge.store.db import Database, driver_url, safe_url
from tests.fixtures.cloud import PITMASTER, PITMASTER_PASSWORD

ERROR = "grillstats-bridge: error: "
UNREACHABLE_PG = "postgresql://grill@127.0.0.1:1/grill"  # plain: psycopg2 must be chosen
PASSWORD = "{password_file}"
BUSY_PORT = "{busy_port}"
READ_ONLY_DIR = "/proc/grillstats-bridge-test"  # not writable, even for root

# What each command is run with: the arguments it requires, plus variants worth trying.
# "{password_file}" and "{busy_port}" are filled in by the test.
ARGS: dict[str, list[list[str]]] = {
    "config show": [[]],
    "config example": [[]],
    "config genkey": [[]],
    "db upgrade": [[], ["nonsense"]],
    "db downgrade": [["base"], ["xyz"]],
    "db current": [[]],
    "db history": [[]],
    "db revision": [["-m", "never written: the database is checked first"]],
    "db pool-test": [["--queries", "2", "--threads", "1"]],
    "user add": [["cook@example.com", "--password-file", PASSWORD]],
    "token create": [["cook@example.com"]],
    "token list": [[]],
    "token revoke": [["1"]],
    "user list": [[]],
    "user passwd": [["cook@example.com", "--password-file", PASSWORD]],
    "user unlock": [["cook@example.com"]],
    "user disable": [["cook@example.com"]],
    "user enable": [["cook@example.com"]],
    "alert add": [
        ["cook@example.com", "--device", "AA:BB", "--probe", "1", "--type", "target"],
    ],
    "alert list": [[]],
    "alert enable": [["1"]],
    "alert disable": [["1"]],
    "alert remove": [["1"]],
    "alert method": [["1", "reverse_sear"]],
    "alert history": [[], ["--since", "3d"]],
    "account link": [["cook@example.com", "--password-file", PASSWORD]],
    "account show": [["cook@example.com"]],
    "account unlink": [["cook@example.com"]],
    "account list": [[]],
    "devices sync": [[]],
    "devices list": [[]],
    "devices rename": [["AA:BB", "Smoker"]],
    "devices transfer": [["AA:BB", "--to", "cook@example.com"]],
    "simulate": [["--port", BUSY_PORT]],
    "session start": [["AA:BB"]],
    "session end": [["1"]],
    "session cancel": [["1"]],
    "session show": [["1"]],
    "session list": [[]],
    "session export": [["1"]],
    "mqtt cleanup": [[], ["--broker-only"]],
    "mqtt acl": [[]],
    "run": [[], ["--migrate"]],
    "check-config": [[]],
    "demo": [["--data-dir", READ_ONLY_DIR, "--no-view"]],
}

# Commands that do their job without the database (or without reading the configuration).
WITHOUT_DATABASE = {"config show", "config example", "config genkey", "db history"}
WITHOUT_CONFIG = {"config example", "config genkey"}
# Commands that talk to the broker: tried with a working database and no broker.
# (``run`` is not among them: it waits for the broker by design, storing meanwhile;
# ``demo`` starts a private broker when none answers.)
NEEDS_BROKER = {"mqtt cleanup", "check-config"}

MALFORMED = {
    "bad-yaml": "database:\n  url: [unclosed\n",
    "unknown-key": "database:\n  pool_sise: 3\n",
    "wrong-type": "mqtt:\n  port: lots\n",
    "not-a-mapping": "- database\n",
    "duplicate-key": "mqtt:\n  port: 1883\n  port: 1884\n",
}


def commands(parser: argparse.ArgumentParser | None = None, prefix: str = "") -> Iterator[str]:
    """Every runnable command of the parser: the leaves of its subcommand tree."""
    parser = parser or build_parser()
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers and prefix:
        yield prefix
    for action in subparsers:
        for name, child in action.choices.items():
            yield from commands(child, f"{prefix} {name}".strip())


COMMANDS = list(commands())
CASES = [
    pytest.param(name, args, id=" ".join([name, *args]))
    for name in COMMANDS
    for args in ARGS.get(name, [[]])
]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def fill(tmp_path: Path, busy_port: int) -> dict[str, str]:
    password = tmp_path / "password"
    password.write_text("a-good-long-password-42\n")
    return {"password_file": str(password), "busy_port": str(busy_port)}


def write(path: Path, settings: dict[str, object]) -> str:
    path.write_text(yaml.safe_dump(settings))
    return str(path)


def unreachable(tmp_path: Path) -> str:
    """Neither the database nor the broker answers; the cloud is not the internet's."""
    return write(
        tmp_path / "unreachable.yaml",
        {
            "database": {"url": UNREACHABLE_PG, "pool_timeout": 1},
            "mqtt": {"host": "127.0.0.1", "port": 1},
            "security": {"key_file": str(tmp_path / "key"), "bcrypt_rounds": 4},
            "thermoworks": {
                "identitytoolkit_url": "http://127.0.0.1:1",
                "securetoken_url": "http://127.0.0.1:1",
                "firebase_url": "http://127.0.0.1:1",
                "firestore_url": "http://127.0.0.1:1",
            },
            "http": {"enabled": False},
        },
    )


def invoke(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> tuple[int, str, str]:
    """main(argv) in this process, as the shell would see it: exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def argv_for(name: str, args: list[str], fill: dict[str, str]) -> list[str]:
    return [*name.split(), *(a.format(**fill) for a in args)]


def assert_one_error_line(code: int, err: str) -> None:
    assert "Traceback" not in err, err
    assert code != 0, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR), err


def test_every_command_has_its_arguments() -> None:
    """A new command needs an ARGS entry (its required arguments), or it is not tried."""
    assert sorted(set(COMMANDS) - set(ARGS)) == []
    assert sorted(set(ARGS) - set(COMMANDS)) == []  # a removed command: drop its entry
    assert len(COMMANDS) > 30


@pytest.mark.parametrize(("name", "args"), CASES)
def test_unreachable_database_and_broker(
    name: str,
    args: list[str],
    tmp_path: Path,
    fill: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--config", unreachable(tmp_path), *argv_for(name, args, fill)]
    code, out, err = invoke(monkeypatch, capsys, argv)
    if name in WITHOUT_DATABASE:
        assert (code, err) == (0, "")
        assert out
    else:
        assert_one_error_line(code, err)


@pytest.mark.parametrize("variant", sorted(MALFORMED))
@pytest.mark.parametrize(("name", "args"), CASES)
def test_malformed_config(
    name: str,
    args: list[str],
    variant: str,
    tmp_path: Path,
    fill: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(MALFORMED[variant])
    code, _, err = invoke(monkeypatch, capsys, ["--config", str(path), *argv_for(name, args, fill)])
    if name in WITHOUT_CONFIG:
        assert (code, err) == (0, "")
    elif name == "simulate":  # needs no configuration; here it fails on the busy port
        assert_one_error_line(code, err)
    else:
        assert_one_error_line(code, err)
        assert code == 2 and "configuration: " in err


@pytest.mark.parametrize(("name", "args"), CASES)
def test_odd_arguments(
    name: str,
    args: list[str],
    tmp_path: Path,
    fill: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--config", unreachable(tmp_path), *argv_for(name, args, fill), "--no-such-option"]
    code, _, err = invoke(monkeypatch, capsys, argv)
    assert_one_error_line(code, err)
    assert code == 2 and "unrecognized arguments: --no-such-option" in err


def test_odd_commands_are_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["nonsense"], ["db"], [], ["--log-level", "LOUD", "db", "current"]):
        code, _, err = invoke(monkeypatch, capsys, argv)
        assert_one_error_line(code, err)
        assert code == 2


@pytest.fixture
def migrated_sqlite(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "grill.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.mark.parametrize(
    ("name", "args"),
    [c for c in CASES if c.values[0] in NEEDS_BROKER],
)
def test_unreachable_broker(
    name: str,
    args: list[str],
    tmp_path: Path,
    migrated_sqlite: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write(
        tmp_path / "config.yaml",
        {
            "database": {"url": migrated_sqlite},
            "mqtt": {"host": "127.0.0.1", "port": 1},
            "security": {"key_file": str(tmp_path / "key")},
        },
    )
    code, _, err = invoke(monkeypatch, capsys, ["--config", config, *name.split(), *args])
    assert_one_error_line(code, err)
    assert "127.0.0.1:1" in err or "mqtt" in err


# Each of these needs a database at head; tried on an empty one and on one behind head.
NEEDS_HEAD = [
    ["user", "list"],
    ["account", "list"],
    ["devices", "list"],
    ["alert", "list"],
    ["session", "list"],
    ["mqtt", "cleanup"],
    ["run"],
]


@pytest.mark.parametrize("revision", ["base", "0003"])
@pytest.mark.parametrize("argv", NEEDS_HEAD, ids=" ".join)
def test_database_at_the_wrong_revision(
    argv: list[str],
    revision: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite:///{tmp_path / 'grill.db'}"
    database = Database(DatabaseConfig(url=url))
    if revision != "base":
        migrate.upgrade(database, next(r for r in _revisions() if r.startswith(revision)))
    database.dispose()
    config = write(tmp_path / "config.yaml", {"database": {"url": url}})
    code, _, err = invoke(monkeypatch, capsys, ["--config", config, *argv])
    assert_one_error_line(code, err)
    assert "run 'grillstats-bridge db upgrade'" in err


def _revisions() -> list[str]:
    versions = revisions.migrations_dir() / "versions"
    return sorted(p.stem for p in versions.glob("0*.py"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["db", "upgrade", "nonsense"], "revision 'nonsense': Can't locate revision"),
        (["db", "downgrade", "xyz"], "revision 'xyz': Can't locate revision"),
        (["db", "downgrade", "+1"], "revision '+1':"),
    ],
)
def test_bad_revision_ids(
    argv: list[str],
    message: str,
    tmp_path: Path,
    migrated_sqlite: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write(tmp_path / "config.yaml", {"database": {"url": migrated_sqlite}})
    code, _, err = invoke(monkeypatch, capsys, ["--config", config, *argv])
    assert_one_error_line(code, err)
    assert code == 2 and message in err


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sqlite:///{tmp}/missing/dir/grill.db", "the directory {tmp}/missing/dir does not exist"),
        ("sqlite:///{tmp}/a-file/grill.db", "{tmp}/a-file is not a directory"),
        # root may write anywhere but in /proc: SQLite cannot say why, a user is told
        ("sqlite:////proc/grill.db", "unable to open database file|/proc is not writable"),
    ],
    ids=["missing", "not-a-directory", "read-only"],
)
@pytest.mark.parametrize("argv", [["db", "upgrade"], ["run", "--migrate"], ["user", "list"]])
def test_sqlite_file_that_cannot_be_created(
    url: str,
    problem: str,
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "a-file").write_text("")
    config = write(tmp_path / "config.yaml", {"database": {"url": url.format(tmp=tmp_path)}})
    code, _, err = invoke(monkeypatch, capsys, ["--config", config, *argv])
    assert_one_error_line(code, err)
    assert any(p.format(tmp=tmp_path) in err for p in problem.split("|")), err


def test_debug_adds_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--config", unreachable(tmp_path), "--log-level", "DEBUG", "db", "current"]
    code, _, err = invoke(monkeypatch, capsys, argv)
    assert code == 1
    assert "Traceback" in err
    assert err.splitlines()[-1].startswith(f"{ERROR}cannot use the database postgresql")


@pytest.mark.parametrize("level", [None, "DEBUG"])
def test_a_bug_is_one_line_that_says_how_to_see_more(
    level: str | None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> str:
        raise RuntimeError("the key generator broke\nsecond line")

    monkeypatch.setattr("grillstats_bridge.cli.config_cmd.generate_key", broken)
    argv = [*(["--log-level", level] if level else []), "config", "genkey"]
    code, _, err = invoke(monkeypatch, capsys, argv)
    assert code == 1
    assert err.splitlines()[-1] == (
        f"{ERROR}unexpected RuntimeError: the key generator broke "
        "(run with --log-level DEBUG for the traceback)"
    )
    assert ("Traceback" in err) == (level == "DEBUG")


# ----------------------------------------------------------- the real entry point


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["db", "upgrade"], 1),
        (["db", "current"], 1),
        (["db", "pool-test"], 1),
        (["run", "--migrate"], 1),
        (["db", "pool-test", "--threads", "none"], 2),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_real_entry_point(argv: list[str], status: int, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "grillstats_bridge", "--config", unreachable(tmp_path), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(ERROR)
    if status == 1:
        assert "127.0.0.1" in line and "grill@" in line


def test_bad_config_from_the_real_entry_point(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(MALFORMED["bad-yaml"])
    proc = subprocess.run(
        [sys.executable, "-m", "grillstats_bridge", "--config", str(path), "user", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"{ERROR}configuration: {path}: line 3: expected ',' or ']', but got '<stream end>'"
    ]


# ----------------------------------------------------------- a plain postgresql:// URL


def test_plain_postgresql_url_means_psycopg2(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plain = make_url(pg_url).set(drivername="postgresql")
    database = Database(DatabaseConfig(url=plain.render_as_string(hide_password=False)))
    try:
        assert database.engine.dialect.driver == "psycopg2"
        assert database.ping()
    finally:
        database.dispose()
    config = write(
        tmp_path / "config.yaml",
        {"database": {"url": plain.render_as_string(hide_password=False)}},
    )
    code, out, err = invoke(monkeypatch, capsys, ["--config", config, "db", "current"])
    assert (code, err) == (0, "")
    assert f"current:  {migrate.head_revision()}" in out


def test_explicit_drivers_are_kept() -> None:
    for url in ("postgresql+psycopg2://u@h/d", "postgresql+pg8000://u@h/d", "sqlite:///x.db"):
        assert driver_url(make_url(url)) == make_url(url)
    assert safe_url(driver_url(make_url("postgresql://u:secret@h/d"))) == (
        "postgresql+psycopg2://u:***@h/d"
    )


# ----------------------------------------------------------- odd answers from the cloud


@pytest.mark.parametrize("kind", ["json", "document"])
@pytest.mark.parametrize("endpoint", ["signIn", "lookup", "firestore", "list", "runQuery"])
def test_account_link_with_odd_cloud_answers(
    endpoint: str,
    kind: str,
    db_url: str,
    cloud: CloudSimulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write(
        tmp_path / "config.yaml",
        {
            "database": {"url": db_url},
            "security": {"key_file": str(tmp_path / "key"), "bcrypt_rounds": 4},
            "thermoworks": {**cloud.urls(), "timeout": 5},
        },
    )
    password = tmp_path / "password"
    password.write_text(PITMASTER_PASSWORD)
    bridge_password = tmp_path / "bridge-password"
    bridge_password.write_text("a-good-long-password-42")
    argv = ["--config", config, "user", "add", PITMASTER, "--password-file", str(bridge_password)]
    assert invoke(monkeypatch, capsys, argv)[0] == 0
    cloud.malform_next(endpoint=endpoint, kind=kind, count=5)
    argv = ["--config", config, "account", "link", PITMASTER, "--password-file", str(password)]
    code, _, err = invoke(monkeypatch, capsys, argv)
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith(ERROR)]
    if code == 0:
        assert errors == [], err
    else:
        assert len(errors) == 1, err
        assert err.splitlines()[-1] == errors[0]
