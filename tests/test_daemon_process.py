"""The daemon as users run it: threads, signals, the health endpoint, check-config."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from grillstats_bridge.accounts.service import link_account
from grillstats_bridge.bridge.daemon import Bridge
from grillstats_bridge.cli import main
from grillstats_bridge.config import Config, MqttConfig
from grillstats_bridge.simulator.server import CloudSimulator
from grillstats_bridge.store import migrate, users
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import GrillingSession
from tests.fixtures.cloud import (
    PITMASTER,
    PITMASTER_PASSWORD,
    SIGNALS,
    MakeCloud,
    assert_no_secret,
)
from tests.fixtures.mqtt import free_port, retained

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 20.0


def wait_until(condition: Any, what: str, timeout: float = DEADLINE) -> None:
    """Poll a real condition with a deadline (for other processes, which we cannot wait on)."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def get_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except OSError:
        return 0, {}


def write_config(
    path: Path, config: Config, cloud: CloudSimulator, http_port: int, **extra: Any
) -> Path:
    data: dict[str, Any] = {
        "database": {"url": config.database.url},
        "security": {"key_file": config.security.key_file, "bcrypt_rounds": 4},
        "logging": {"level": "INFO"},
        "thermoworks": {**cloud.urls(), "timeout": 5},
        "mqtt": {
            k: getattr(config.mqtt, k)
            for k in ("host", "port", "instance_id", "base_topic", "discovery_prefix")
        },
        "polling": {"active_interval": 5, "idle_interval": 5, "min_interval": 1},
        "http": {"host": "127.0.0.1", "port": http_port},
    }
    for section, values in extra.items():
        data.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def linked(
    config: Config, database: Database, mqtt_config: MqttConfig, make_cloud: MakeCloud
) -> tuple[Config, CloudSimulator]:
    """A migrated database with a user linked to the brisket account (simulator in real time)."""
    cloud = make_cloud("brisket", speed=1.0, at=3 * 3600)
    cfg = dataclasses.replace(config.replace("thermoworks", **cloud.urls()), mqtt=mqtt_config)
    with database.transaction() as db:
        users.add_user(db, "cook@example.com", "grill-password", cfg.security)
    link_account(
        database,
        cfg,
        "cook@example.com",
        PITMASTER_PASSWORD,
        tw_email=PITMASTER,
        store_password=True,
    )
    return cfg, cloud


class Daemon:
    """``grillstats-bridge run`` in a child process, its standard error collected line by line."""

    def __init__(self, config_path: Path, *args: str) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "grillstats_bridge", "--config", str(config_path), "run", *args],
            cwd=REPO,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for_line(self, text: str, timeout: float = DEADLINE) -> str:
        with self._cond:
            ok = self._cond.wait_for(lambda: any(text in line for line in self.lines), timeout)
        assert ok, f"no log line with {text!r}; got:\n" + "\n".join(self.lines[-20:])
        return next(line for line in self.lines if text in line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


def test_run_serves_health_and_stops_cleanly_on_sigterm(
    tmp_path: Path, linked: tuple[Config, CloudSimulator], daemons: list[Daemon]
) -> None:
    config, cloud = linked
    port = free_port()
    path = write_config(tmp_path / "config.yaml", config, cloud, port)
    daemon = Daemon(path)
    daemons.append(daemon)
    url = f"http://127.0.0.1:{port}/health"
    wait_until(lambda: get_json(url)[1].get("pipeline", {}).get("polls", 0) >= 2, "two polls")
    code, report = get_json(url)
    assert code == 200 and report["status"] == "ok"
    assert report["database"]["reachable"] and report["mqtt"]["connected"]
    assert set(report["database"]["pool"]) >= {"size", "checked_in", "checked_out", "overflow"}
    assert report["accounts"][0]["state"] == "ok" and report["accounts"][0]["last_success"]
    assert report["version"] and report["uptime_seconds"] > 0

    # SIGHUP: the new log level applies without a restart.
    data = yaml.safe_load(path.read_text())
    data["logging"]["level"] = "DEBUG"
    data["polling"]["idle_interval"] = 10
    path.write_text(yaml.safe_dump(data))
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for_line("configuration reloaded: applied logging, polling")

    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(10) == 0  # a deadline against a hang, not a duration to meet
    daemon.wait_for_line("stopped")
    log = "\n".join(daemon.lines)
    assert "Traceback" not in log
    assert_no_secret(log, cloud, "grill-password")
    mqtt = config.mqtt
    status = retained(mqtt.host, mqtt.port, f"{mqtt.base_topic}/{mqtt.instance_id}/status")
    assert list(status.values()) == [b"offline"]


def test_run_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"database": {"url": f"sqlite:///{tmp_path / 'new.db'}"}}))
    proc = subprocess.run(
        [sys.executable, "-m", "grillstats_bridge", "--config", str(path), "run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"grillstats-bridge: error: the database is empty, not {migrate.head_revision()}: "
        "run 'grillstats-bridge db upgrade' (or start with --migrate)"
    ]


def test_check_config_reports_each_part(
    tmp_path: Path,
    linked: tuple[Config, CloudSimulator],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, cloud = linked
    path = write_config(tmp_path / "config.yaml", config, cloud, free_port())
    assert main(["--config", str(path), "check-config"]) == 0
    out = capsys.readouterr().out
    assert "database: OK" in out and "mqtt: OK" in out
    assert "account 1: OK signed in, 4 device(s)" in out and "all checks passed" in out

    bad = write_config(
        tmp_path / "bad.yaml", config, cloud, free_port(), mqtt={"port": free_port()}
    )
    assert main(["--config", str(bad), "check-config"]) == 1
    out, err = capsys.readouterr()
    assert "mqtt: FAIL" in out
    assert err.splitlines() == ["grillstats-bridge: error: 1 check(s) failed: mqtt"]


def test_a_slow_account_does_not_hold_up_the_others(
    config: Config, database: Database, mqtt_config: MqttConfig, make_cloud: MakeCloud
) -> None:
    cloud = make_cloud(["brisket", "fridge_logger"], speed=60.0)
    cfg = config.replace("polling", active_interval=15, idle_interval=15, min_interval=5)
    cfg = cfg.replace("http", enabled=False).replace("thermoworks", **cloud.urls())
    cfg = dataclasses.replace(cfg, mqtt=mqtt_config)
    with database.transaction() as db:
        users.add_user(db, "a@example.com", "grill-password", cfg.security)
        users.add_user(db, "b@example.com", "grill-password", cfg.security)
    link_account(
        database, cfg, "a@example.com", PITMASTER_PASSWORD, tw_email=PITMASTER, clock=cloud.now
    )
    link_account(
        database,
        cfg,
        "b@example.com",
        "cold-chain-37",
        tw_email="deli@example.com",
        clock=cloud.now,
    )
    bridge = Bridge(cfg, clock=cloud.clock, database=database)
    bridge.start()
    runner = threading.Thread(target=bridge.run, daemon=True)
    runner.start()
    try:

        def polls_of(email: str) -> int:
            return sum(1 for r in cloud.records if r.endpoint == "runQuery" and r.account == email)

        wait_until(lambda: polls_of(PITMASTER) and polls_of("deli@example.com"), "first polls")
        # The pitmaster's next poll hangs (held by the cloud until released) ...
        cloud.slow_next(600.0, endpoint="runQuery", account=PITMASTER)
        wait_until(lambda: cloud.holding == 1, "the pitmaster's poll to hang")
        pitmaster, deli = polls_of(PITMASTER), polls_of("deli@example.com")
        # ... and the deli's account goes on meanwhile (every 0.25 s).
        wait_until(lambda: polls_of("deli@example.com") >= deli + 5, "the deli's polls")
        assert polls_of(PITMASTER) == pitmaster and cloud.holding == 1
        cloud.release_slow()
        wait_until(lambda: polls_of(PITMASTER) > pitmaster, "the slow poll to end")
    finally:
        bridge.request_stop()
        runner.join(15)
    assert bridge.stopped.is_set()


def test_kill_9_mid_cook_resumes_the_same_session(
    tmp_path: Path,
    config: Config,
    database: Database,
    mqtt_config: MqttConfig,
    make_cloud: MakeCloud,
    daemons: list[Daemon],
) -> None:
    """No goodbye at all (SIGKILL), a restart within sessions.offline_end_after: same cook."""
    # The cloud's clock is the daemon's (wall) clock, three hours into the brisket cook.
    cloud = make_cloud(
        "brisket", speed=1.0, at=3 * 3600, start=datetime.now(UTC) - timedelta(hours=3)
    )
    config = dataclasses.replace(config.replace("thermoworks", **cloud.urls()), mqtt=mqtt_config)
    with database.transaction() as db:
        users.add_user(db, "cook@example.com", "grill-password", config.security)
    link_account(database, config, "cook@example.com", PITMASTER_PASSWORD, tw_email=PITMASTER)
    port = free_port()
    # start_hold 0: the cook (the pit at 240 °F) is recognised at the first poll
    sessions = {"start_hold": 0}
    polling = {"active_interval": 1, "idle_interval": 1, "min_interval": 1}
    path = write_config(
        tmp_path / "config.yaml", config, cloud, port, sessions=sessions, polling=polling
    )
    health = f"http://127.0.0.1:{port}/health"

    def cooks() -> list[tuple[int, str]]:
        with database.session() as db:
            rows = db.execute(
                sa.select(GrillingSession.id, GrillingSession.status)
                .where(GrillingSession.device_id == SIGNALS)
                .order_by(GrillingSession.id)
            )
            return [(r.id, r.status) for r in rows]

    def polls() -> int:
        return int(get_json(health)[1].get("pipeline", {}).get("polls", 0))

    first = Daemon(path)
    daemons.append(first)
    wait_until(lambda: [c[1] for c in cooks()] == ["active"], "the cook to be detected")
    seen = polls()
    wait_until(lambda: polls() >= seen + 2, "two more polls of the cook")
    first.proc.send_signal(signal.SIGKILL)
    assert first.proc.wait(10) == -signal.SIGKILL
    (cook,) = cooks()

    second = Daemon(path)
    daemons.append(second)
    wait_until(lambda: polls() >= 3, "three polls of the restarted daemon")
    assert cooks() == [cook], "the cook was ended, or a new one started, after the restart"
    assert "Traceback" not in "\n".join(second.lines)
