"""``run --processes N``: several processes, one bridge (real PostgreSQL, Mosquitto, cloud)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from grillstats_bridge.bridge.identity import ProcessIdentity
from grillstats_bridge.bridge.processes import (
    adopt_orphaned_journals,
    journal_file,
    mqtt_identity,
    process_config,
)
from grillstats_bridge.cli.supervise import MAX_BACKOFF_S, MIN_BACKOFF_S, STABLE_S, next_backoff
from grillstats_bridge.config import Config, MqttConfig
from grillstats_bridge.domain import Reading, Unit
from grillstats_bridge.mqtt.claim import Claim
from grillstats_bridge.simulator.server import CloudSimulator
from grillstats_bridge.store.journal import Journal
from tests.fixtures.mqtt import free_port, free_ports, retained
from tests.test_daemon_process import (
    REPO,
    Daemon,
    daemons,
    get_json,
    linked,
    wait_until,
    write_config,
)

__all__ = ["daemons", "linked"]  # fixtures, used by name

ON_POSTGRESQL = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from /proc), oldest first."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append((int(fields[19]), int(entry.name)))  # start time, pid
    return [p for _, p in sorted(found)]


def run_cli(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "grillstats_bridge", "--config", str(config_path), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )


@ON_POSTGRESQL
def test_two_processes_one_bridge(
    tmp_path: Path,
    linked: tuple[Config, CloudSimulator],
    daemons: list[Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config, cloud = linked
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # what systemd would hear
    systemd.bind(str(tmp_path / "notify"))
    systemd.settimeout(60)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    mqtt = config.mqtt
    root = f"{mqtt.base_topic}/{mqtt.instance_id}"
    port = free_ports(2)
    path = write_config(tmp_path / "config.yaml", config, cloud, port)
    daemon = Daemon(path, "--processes", "2")
    daemons.append(daemon)
    assert systemd.recv(4096).startswith(b"READY=1\n")  # the supervisor's, once both are
    daemon.wait_for_line("all 2 processes ready")
    health = [f"http://127.0.0.1:{port + i}/health" for i in range(2)]

    def leases() -> list[int | None]:
        return [get_json(url)[1].get("leases", {}).get("held") for url in health]

    # The one linked account is leased to one of the processes, which polls it.
    wait_until(lambda: sorted(leases(), key=str) == [0, 1], "the account leased to one process")
    wait_until(lambda: sum(get_json(u)[1]["pipeline"]["polls"] for u in health) >= 1, "a poll")
    reports = [get_json(url)[1] for url in health]
    assert all(r["mqtt"]["connected"] for r in reports)
    client_ids = [r["mqtt"]["client_id"] for r in reports]
    assert len(set(client_ids)) == 2
    assert all(c.startswith(mqtt.effective_client_id + "-") for c in client_ids)
    assert client_ids[0].endswith("-0") and client_ids[1].endswith("-1")
    held = retained(mqtt.host, mqtt.port, f"{root}/#")
    process_topics = sorted(t for t in held if t.startswith(f"{root}/bridge/process/"))
    assert len(process_topics) == 2 and all(held[t] == b"online" for t in process_topics)
    assert held[f"{root}/status"] == b"online"
    claim = Claim.parse(held[f"{root}/bridge/claim"])
    assert claim is not None and claim.bridge and claim.pid in children_of(daemon.proc.pid)

    # Another bridge on the same instance id (its own database) is still refused.
    other = write_config(
        tmp_path / "other.yaml",
        config.replace("database", url=f"sqlite:///{tmp_path / 'other.db'}"),
        cloud,
        free_port(),
    )
    proc = run_cli(other, "run", "--migrate")
    assert proc.returncode == 1
    assert "another bridge already runs as mqtt.instance_id" in proc.stderr

    # kill -9 of one process: the supervisor restarts it; the bridge stays online meanwhile.
    first, second = children_of(daemon.proc.pid)
    os.kill(second, signal.SIGKILL)
    daemon.wait_for_line(f"process 1 (pid {second}) was killed by SIGKILL")
    wait_until(
        lambda: (
            retained(mqtt.host, mqtt.port, process_topics[1]).get(process_topics[1]) == b"offline"
        ),
        "the killed process's will",
    )
    assert retained(mqtt.host, mqtt.port, f"{root}/status")[f"{root}/status"] == b"online"
    daemon.wait_for_line("process 1 ready again", timeout=30)
    daemon.wait_for_line("[process 1] grillstats_bridge.mqtt.claim: joining the running processes")
    restarted = children_of(daemon.proc.pid)
    assert restarted[0] == first and restarted[1] != second
    wait_until(lambda: get_json(health[1])[1].get("mqtt", {}).get("connected"), "reconnected")
    assert get_json(health[1])[1]["mqtt"]["client_id"] == client_ids[1]  # the same id again

    # SIGHUP reaches both: the new polling settings apply, their health ports stay theirs.
    data = yaml.safe_load(path.read_text())
    data["polling"]["idle_interval"] = 10
    path.write_text(yaml.safe_dump(data))
    daemon.proc.send_signal(signal.SIGHUP)
    for index in range(2):
        line = daemon.wait_for_line(f"[process {index}] grillstats_bridge.bridge.daemon: config")
        assert line.endswith("configuration reloaded: applied polling"), line

    # SIGTERM stops them all; the bridge is offline once the last one went.
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0  # a deadline against a hang
    assert children_of(daemon.proc.pid) == []
    for pid in restarted:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    held = retained(mqtt.host, mqtt.port, f"{root}/#")
    assert systemd.recv(4096) == b"STOPPING=1\nSTATUS=stopping"
    systemd.close()
    assert held[f"{root}/status"] == b"offline"
    assert all(held[t] == b"offline" for t in process_topics)
    log = "\n".join(daemon.lines)
    assert "Traceback" not in log
    assert sum("[process 0]" in line and "stopped" in line for line in daemon.lines) == 1
    assert (
        sum(
            "[process 1]" in line and "bridge" in line and "started" in line
            for line in daemon.lines
        )
        == 2
    )


def test_sqlite_stays_one_process(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"database": {"url": f"sqlite:///{tmp_path / 'g.db'}"}}))
    proc = run_cli(path, "run", "--processes", "2", "--migrate")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "grillstats-bridge: error: --processes 2: a SQLite database serves one process; "
        "use PostgreSQL for more (database.url)"
    ]
    assert not (tmp_path / "g.db").exists()  # refused before anything was done


@ON_POSTGRESQL
def test_children_that_cannot_start_end_the_run(
    tmp_path: Path, linked: tuple[Config, CloudSimulator], daemons: list[Daemon]
) -> None:
    """The health port of process 1 is taken: it cannot start, and the run ends non-zero."""
    config, cloud = linked
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1] - 1  # process 1's port: http.port + 1
        path = write_config(tmp_path / "config.yaml", config, cloud, port)
        daemon = Daemon(path, "--processes", "2")
        daemons.append(daemon)
        assert daemon.proc.wait(60) == 1
    daemon.wait_for_line(
        "grillstats-bridge: error: process 1 exited with status 1 before it was ready"
    )
    assert "Traceback" not in "\n".join(daemon.lines)


def test_one_process_is_what_it_always_was() -> None:
    config = Config()
    one = ProcessIdentity()
    assert mqtt_identity(config, one).client_id == config.mqtt.effective_client_id
    assert mqtt_identity(config, one).status_topic == "grillstats/grillstats/status"
    assert mqtt_identity(config, one).bridge_key == ""
    assert process_config(config, one) is config
    assert journal_file(config, one).name == "grillstats-journal.jsonl"
    assert Claim("r", "s", 1).payload() == b'{"run_id":"r","started":"s","pid":1}'

    two = ProcessIdentity(1, 2, host="box")
    mine = mqtt_identity(config, two)
    assert mine.client_id == "grillstats-bridge-grillstats-box-1"
    assert mine.status_topic == "grillstats/grillstats/bridge/process/box-1/status"
    assert mine.bridge_key == mqtt_identity(config, ProcessIdentity(0, 2)).bridge_key
    elsewhere = config.replace("database", url="postgresql://u:pw@db.example/other")
    assert mqtt_identity(elsewhere, two).bridge_key != mine.bridge_key
    assert process_config(config, two).http.port == config.http.port + 1
    assert journal_file(config, two).name == "grillstats-journal.1.jsonl"


def test_process_0_takes_in_the_journals_of_processes_no_longer_run(tmp_path: Path) -> None:
    """``--processes 3`` (or one process) before, ``--processes 2`` now: the journals no
    process writes any more are added to process 0's own before it replays, and removed."""
    config = Config().replace("security", key_file=str(tmp_path / "bridge.key"))
    at = datetime(2026, 7, 4, 12, 0, tzinfo=UTC)

    def owned(user_id: int, minute: int) -> tuple[int, Reading]:
        when = at.replace(minute=minute)
        reading = Reading(
            serial="S-1", channel=1, time=when, value=200.0 + minute, unit=Unit.FAHRENHEIT
        )
        return (user_id, reading)

    first, second = ProcessIdentity(0, 2), ProcessIdentity(1, 2)
    files = {
        "grillstats-journal.0.jsonl": [owned(1, 1)],  # process 0's own
        "grillstats-journal.1.jsonl": [owned(2, 2)],  # process 1's: it still runs
        "grillstats-journal.2.jsonl": [owned(3, 3), owned(3, 4)],  # of --processes 3
        "grillstats-journal.jsonl": [owned(4, 5)],  # of a single process
    }
    for name, readings in files.items():
        Journal(tmp_path / name).save(readings)
    (tmp_path / "grillstats-journal.old.jsonl").write_text("not one of ours\n")
    mine = Journal(journal_file(config, first))
    assert adopt_orphaned_journals(config, second, Journal(journal_file(config, second))) == 0
    assert adopt_orphaned_journals(config, first, mine) == 3
    assert mine.load() == [owned(1, 1), owned(3, 3), owned(3, 4), owned(4, 5)]  # in file order
    assert Journal(tmp_path / "grillstats-journal.1.jsonl").load() == [owned(2, 2)]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [
        "grillstats-journal.0.jsonl",
        "grillstats-journal.1.jsonl",
        "grillstats-journal.old.jsonl",
    ]
    assert adopt_orphaned_journals(config, first, mine) == 0  # nothing left to take in


def test_claims_of_one_bridge_answer_for_each_other() -> None:
    a, b = Claim("a", "s", 1, "key"), Claim("b", "s", 2, "key")
    assert b.answers_for(a) and a.answers_for(a)
    assert not Claim("c", "s", 3).answers_for(Claim("d", "s", 4))
    assert not Claim("c", "s", 3, "other").answers_for(a)
    assert Claim.parse(b.payload()) == b


def test_back_off_doubles_to_its_cap_and_resets_after_a_stable_run() -> None:
    delay, following = next_backoff(MIN_BACKOFF_S, ran_for=1.0)
    assert (delay, following) == (MIN_BACKOFF_S, 2 * MIN_BACKOFF_S)
    assert next_backoff(MAX_BACKOFF_S, ran_for=1.0) == (MAX_BACKOFF_S, MAX_BACKOFF_S)
    assert next_backoff(MAX_BACKOFF_S, ran_for=STABLE_S)[0] == MIN_BACKOFF_S


@ON_POSTGRESQL
def test_a_process_that_stops_pinging_the_watchdog_is_restarted(
    tmp_path: Path,
    linked: tuple[Config, CloudSimulator],
    daemons: list[Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config, cloud = linked
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")  # pings every second; stuck after 4 s
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    path = write_config(tmp_path / "config.yaml", config, cloud, free_ports(2))
    daemon = Daemon(path, "--processes", "2")
    daemons.append(daemon)
    daemon.wait_for_line("all 2 processes ready", timeout=60)
    stuck = children_of(daemon.proc.pid)[0]
    os.kill(stuck, signal.SIGSTOP)  # alive, but not a word any more
    daemon.wait_for_line(f"process 0 (pid {stuck}) stopped pinging the watchdog: killing it")
    daemon.wait_for_line(f"process 0 (pid {stuck}) was killed by SIGKILL")
    daemon.wait_for_line("process 0 ready again", timeout=30)
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0
    assert "Traceback" not in "\n".join(daemon.lines)


@pytest.mark.parametrize("empty_db_url", ["postgresql"], indirect=True)
def test_migrate_and_the_key_file_happen_once_in_the_supervisor(
    tmp_path: Path, empty_db_url: str, mqtt_config: MqttConfig, daemons: list[Daemon]
) -> None:
    key = tmp_path / "state" / "grillstats.key"
    key.parent.mkdir()
    fields = ("host", "port", "instance_id", "base_topic", "discovery_prefix")
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database": {"url": empty_db_url},
                "security": {"key_file": str(key)},
                "logging": {"level": "INFO"},
                "mqtt": {k: getattr(mqtt_config, k) for k in fields},
                "http": {"host": "127.0.0.1", "port": free_ports(2)},
            }
        )
    )
    daemon = Daemon(path, "--processes", "2", "--migrate")
    daemons.append(daemon)
    daemon.wait_for_line("all 2 processes ready", timeout=60)
    migrated = [line for line in daemon.lines if "database migrated" in line]
    assert len(migrated) == 1 and "[process" not in migrated[0], migrated
    created = [line for line in daemon.lines if "created a new encryption key" in line]
    assert len(created) == 1 and "[process" not in created[0], created
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0
    assert "Traceback" not in "\n".join(daemon.lines)
