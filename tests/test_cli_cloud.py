"""The account, devices and simulate commands, end to end (simulator over HTTP, both databases)."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from grillstats_bridge.cli import main
from grillstats_bridge.config import Config
from grillstats_bridge.simulator.server import CloudSimulator
from tests.fixtures.cloud import PITMASTER, PITMASTER_PASSWORD, SIGNALS, assert_no_secret

USER = "pat@example.com"


@pytest.fixture
def config_file(config: Config, cloud: CloudSimulator, tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database": {"url": config.database.url},
                "security": {"key_file": config.security.key_file, "bcrypt_rounds": 4},
                "thermoworks": {**cloud.urls(), "timeout": 5},
            }
        )
    )
    return path


def run(
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    stdin: str = "",
) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(["--config", str(config_file), *args])


def test_link_show_list_rename_unlink(
    config_file: Path,
    cloud: CloudSimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    secret_log: pytest.LogCaptureFixture,
) -> None:
    assert run(config_file, monkeypatch, "user", "add", USER, stdin="bridge-password-1\n") == 0
    code = run(
        config_file,
        monkeypatch,
        "account",
        "link",
        USER,
        "--tw-email",
        PITMASTER,
        "--store-password",
        stdin=PITMASTER_PASSWORD + "\n",
    )
    assert code == 0
    out = capsys.readouterr().out
    assert f"linked {USER} to thermoworks account {PITMASTER}" in out
    assert "found 4 devices" in out

    assert run(config_file, monkeypatch, "account", "show", USER) == 0
    shown = capsys.readouterr().out
    assert re.search(r"state:\s+ok", shown) and "yes (encrypted)" in shown
    assert cloud.account_uid(PITMASTER) in shown

    assert run(config_file, monkeypatch, "devices", "rename", SIGNALS, "Big Green Egg") == 0
    assert run(config_file, monkeypatch, "devices", "sync", USER) == 0
    assert run(config_file, monkeypatch, "devices", "list", USER) == 0
    listed = capsys.readouterr().out
    assert "Big Green Egg (renamed)" in listed and "Brisket A Flat" in listed
    assert "unplugged" in listed and "°F" in listed and "high 275.0 °F" in listed

    assert run(config_file, monkeypatch, "account", "list") == 0
    assert "4/4" in capsys.readouterr().out
    assert run(config_file, monkeypatch, "account", "unlink", USER) == 0
    assert run(config_file, monkeypatch, "account", "show", USER) == 1
    everything = capsys.readouterr()
    assert_no_secret(everything.out + everything.err + secret_log.text + shown + listed, cloud)


def test_link_refusals_are_one_line(
    config_file: Path,
    cloud: CloudSimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(config_file, monkeypatch, "account", "link", "nobody@example.com", stdin="x\n") == 2
    assert "no user with email" in capsys.readouterr().err
    run(config_file, monkeypatch, "user", "add", USER, stdin="bridge-password-1\n")
    code = run(
        config_file,
        monkeypatch,
        "account",
        "link",
        USER,
        "--tw-email",
        PITMASTER,
        stdin="wrong-password-77\n",
    )
    err = capsys.readouterr().err
    assert code == 1
    (error,) = [line for line in err.splitlines() if "error:" in line]
    assert "INVALID_LOGIN_CREDENTIALS" in error
    assert "wrong-password-77" not in err
    assert run(config_file, monkeypatch, "devices", "sync", USER) == 1
    assert "not linked" in capsys.readouterr().out


def test_sync_reports_credentials_needing_the_owner(
    config_file: Path,
    cloud: CloudSimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run(config_file, monkeypatch, "user", "add", USER, stdin="bridge-password-1\n")
    run(
        config_file,
        monkeypatch,
        "account",
        "link",
        USER,
        "--tw-email",
        PITMASTER,
        stdin=PITMASTER_PASSWORD + "\n",
    )
    cloud.revoke_refresh_tokens(PITMASTER)
    cloud.expire_tokens()
    capsys.readouterr()
    assert run(config_file, monkeypatch, "devices", "sync") == 1
    assert "refresh token is no longer valid" in capsys.readouterr().out
    assert run(config_file, monkeypatch, "account", "show", USER) == 0
    assert re.search(r"state:\s+needs_reauth since .*refresh token", capsys.readouterr().out)
    assert run(config_file, monkeypatch, "devices", "list") == 0
    assert "error" in capsys.readouterr().out


def test_simulate_command_serves_until_terminated(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "grillstats_bridge",
            "simulate",
            "--port",
            "0",
            "--scenario",
            "kitchen_logger",
            "--speed",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        base = None
        for line in proc.stdout:  # blocks on real output, not on time
            match = re.match(r"listening on (http://\S+);", line)
            if match:
                base = match.group(1)
                break
        assert base is not None
        answer = requests.post(
            f"{base}/identitytoolkit/v1/accounts:signInWithPassword",
            params={"key": "not-a-key"},
            json={},
            timeout=5,
        )
        assert answer.status_code == 400
        assert "API key not valid" in answer.json()["error"]["message"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)  # also closes the pipes
    assert proc.returncode == 0, err
