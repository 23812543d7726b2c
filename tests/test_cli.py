"""The command line: every level has --help, errors are one line with the right exit code."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from grillstats_bridge import __version__
from grillstats_bridge.cli import build_parser, main
from grillstats_bridge.config import Config
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import User

REPO = Path(__file__).resolve().parent.parent


def config_file(tmp_path: Path, config: Config) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"database: {{url: '{config.database.url}'}}\n"
        f"security: {{key_file: '{config.security.key_file}', bcrypt_rounds: 4}}\n"
    )
    return str(path)


def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str, stdin: str = ""
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def all_command_paths() -> list[list[str]]:
    paths: list[list[str]] = [[]]

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    paths.append([*prefix, name])
                    walk(child, [*prefix, name])

    walk(build_parser(), [])
    return paths


@pytest.mark.parametrize("path", all_command_paths(), ids=lambda p: " ".join(p) or "top")
def test_help_on_every_level(path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*path, "--help"])
    assert exit_info.value.code == 0
    assert "usage: grillstats-bridge" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"grillstats-bridge {__version__}"


def test_bad_argument_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["db", "pool-test", "--threads", "zero"])
    assert exit_info.value.code == 2
    assert "--threads: not a whole number: 'zero'" in capsys.readouterr().err


def test_bad_config_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("database:\n  pool_size: lots\n")
    proc = subprocess.run(
        [sys.executable, "-m", "grillstats_bridge", "--config", str(bad), "user", "list"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "grillstats-bridge: error: configuration: database.pool_size: "
        "must be a whole number, got 'lots'\n"
    )


def test_unmigrated_database_says_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRILLSTATS_DATABASE_URL", f"sqlite:///{tmp_path / 'new.db'}")
    code, _, err = run(monkeypatch, capsys, "--config", "/dev/null", "user", "list")
    assert code == 1
    assert err.strip() == (
        "grillstats-bridge: error: the database is empty, not "
        f"{_head()}: run 'grillstats-bridge db upgrade' (or start with --migrate)"
    )
    code, out, _ = run(monkeypatch, capsys, "--config", "/dev/null", "db", "upgrade")
    assert code == 0 and f"upgraded base -> {_head()}" in out
    code, out, _ = run(monkeypatch, capsys, "--config", "/dev/null", "db", "current")
    assert code == 0 and "up to date" in out
    code, out, _ = run(monkeypatch, capsys, "--config", "/dev/null", "db", "history")
    assert code == 0 and "0001_seed" in out


def _head() -> str:
    from grillstats_bridge.store import migrate

    head = migrate.head_revision()
    assert head is not None
    return head


def test_user_lifecycle(
    tmp_path: Path,
    config: Config,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = config_file(tmp_path, config)
    code, out, _ = run(
        monkeypatch,
        capsys,
        "--config",
        cfg,
        "user",
        "add",
        "Cook@Example.com",
        "--name",
        "Pit Boss",
        stdin="s3cret-pass\n",
    )
    assert (code, out) == (0, "added user 1: cook@example.com\n")

    code, _, err = run(
        monkeypatch,
        capsys,
        "--config",
        cfg,
        "user",
        "add",
        "cook@example.com",
        stdin="s3cret-pass\n",
    )
    assert code == 2 and "already exists" in err and err.count("\n") == 1

    code, _, err = run(
        monkeypatch, capsys, "--config", cfg, "user", "add", "x@y.io", stdin="short\n"
    )
    assert code == 2 and "at least 8 characters" in err

    pw_file = tmp_path / "pw"
    pw_file.write_text("another-pass\n")
    code, out, _ = run(
        monkeypatch,
        capsys,
        "--config",
        cfg,
        "user",
        "passwd",
        "COOK@example.com",
        "--password-file",
        str(pw_file),
    )
    assert code == 0

    with database.transaction() as session:
        user = session.scalars(sa.select(User)).one()
        user.is_locked = True
        user.failed_login_attempts = 5
    code, out, _ = run(monkeypatch, capsys, "--config", cfg, "user", "list")
    assert code == 0 and "locked" in out and "Pit Boss" in out
    assert run(monkeypatch, capsys, "--config", cfg, "user", "unlock", "cook@example.com")[0] == 0
    assert run(monkeypatch, capsys, "--config", cfg, "user", "disable", "cook@example.com")[0] == 0
    code, out, _ = run(monkeypatch, capsys, "--config", cfg, "user", "list")
    assert "disabled" in out and "locked" not in out
    assert run(monkeypatch, capsys, "--config", cfg, "user", "enable", "cook@example.com")[0] == 0

    from grillstats_bridge.store import users

    user = users.authenticate(database, "cook@example.com", "another-pass", config.security)
    assert user.is_active

    code, _, err = run(monkeypatch, capsys, "--config", cfg, "user", "unlock", "nobody@example.com")
    assert code == 2 and "no user with email 'nobody@example.com'" in err


def test_pool_test_command(
    tmp_path: Path,
    config: Config,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = config_file(tmp_path, config)
    code, out, _ = run(
        monkeypatch,
        capsys,
        "--config",
        cfg,
        "db",
        "pool-test",
        "--queries",
        "120",
        "--threads",
        "8",
    )
    assert code == 0, out
    assert (
        "pool_size=10 max_overflow=20 pool_recycle=3600 pool_pre_ping=True pool_timeout=30" in out
    )
    assert "OK: connections reused and all returned to the pool" in out
    used = int(out.split(" connections served them")[0].rsplit(" ", 1)[1])
    opened = int(out.split(" opened during the run")[0].rsplit("(", 1)[1])
    assert 1 <= used <= 8  # at most one per thread, far fewer than 120 queries
    assert opened <= used
    if database.dialect == "postgresql":
        assert "statement_timeout=30s client_encoding=UTF8" in out


def test_config_show_hides_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "database: {url: 'postgresql+psycopg2://u:hunter22@db/x'}\nmqtt: {password: pw-1234}\n"
    )
    code, out, _ = run(monkeypatch, capsys, "--config", str(path), "config", "show")
    assert code == 0
    assert "hunter22" not in out and "pw-1234" not in out and "u:***@db" in out


def test_non_editable_install_ships_the_migrations(tmp_path: Path) -> None:
    """``pip install .`` must carry migrations/ inside the package, and `db upgrade` must work."""
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    assert (target / "grillstats_bridge" / "migrations" / "env.py").is_file()
    assert (target / "grillstats_bridge" / "migrations" / "versions" / "0001_seed.py").is_file()
    web = target / "grillstats_bridge" / "web"  # the web app's templates and static files
    assert (web / "templates" / "base.html").is_file() and (web / "static" / "live.js").is_file()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from grillstats_bridge.cli import main; sys.exit(main())",
            "--config",
            "/dev/null",
            "db",
            "upgrade",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={
            "PYTHONPATH": str(target),
            "PATH": "/usr/bin:/bin",
            "GRILLSTATS_DATABASE_URL": f"sqlite:///{tmp_path / 'i.db'}",
        },
    )
    assert proc.returncode == 0, proc.stderr
    assert "upgraded base -> " in proc.stdout


def test_every_package_is_listed_in_pyproject() -> None:
    import tomllib

    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "grillstats_bridge").rglob("__init__.py")
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
