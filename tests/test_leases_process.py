"""Two real ``grillstats-bridge run`` processes on one PostgreSQL (issue 17): the accounts
are shared, a ``kill -9`` hands the dead one's accounts to the other within the lease
time, a restarted process takes its share back, and nothing is published twice.

The two processes run under two instance ids: on main the instance claim lets one
bridge per instance id in (``run --processes N`` gives its children one id).
"""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from grillstats_bridge.accounts.service import link_account
from grillstats_bridge.config import Config, MqttConfig
from grillstats_bridge.simulator.server import CloudSimulator
from grillstats_bridge.store import users
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import GrillingSession
from tests.fixtures.cloud import MakeCloud
from tests.fixtures.db import truncate_all
from tests.fixtures.mqtt import (
    Broker,
    Subscriber,
    clear_retained,
    free_port,
    free_ports,
    make_mqtt_config,
    retained,
)
from tests.test_daemon_process import Daemon, daemons, get_json, linked, wait_until, write_config

__all__ = ["daemons", "linked"]  # the fixtures, shared with test_daemon_process
LEASE_TIME = 3.0
SCENARIOS = ["brisket", "hot_and_fast", "fridge_logger", "kitchen_logger"]


@pytest.fixture(params=["postgresql"])
def db_url(request: pytest.FixtureRequest, pg_url: str) -> Iterator[str]:
    """PostgreSQL only: SQLite has no leases (one process)."""
    database = Database(dataclasses.replace(Config().database, url=pg_url))
    truncate_all(database)
    database.dispose()
    yield pg_url


def health(port: int) -> dict[str, Any]:
    return get_json(f"http://127.0.0.1:{port}/health")[1]


def polled(report: dict[str, Any], since: datetime | None = None) -> set[int]:
    """The accounts a process polls (and has polled since ``since``)."""
    return {
        a["user_id"]
        for a in report.get("accounts", [])
        if a["last_success"]
        and (since is None or datetime.fromisoformat(a["last_success"]) > since)
    }


def test_two_run_processes_share_the_accounts_and_survive_a_kill_9(
    tmp_path: Path,
    config: Config,
    database: Database,
    mqtt_broker: Broker,
    mqtt_config: MqttConfig,
    make_cloud: MakeCloud,
    daemons: list[Daemon],
) -> None:
    cloud = make_cloud(SCENARIOS, speed=1.0, at=3 * 3600)
    cfg = config.replace("thermoworks", **cloud.urls())
    user_ids = []
    for n, account in enumerate(cloud.scenario.accounts):
        email = f"cook{n}@example.com"
        with database.transaction() as db:
            user_ids.append(users.add_user(db, email, "grill-password", cfg.security).id)
        link_account(
            database,
            cfg,
            email,
            account.password,
            provider=account.provider,
            tw_email=account.email,
            store_password=True,
        )
    mqtts = [make_mqtt_config(mqtt_broker, f"{mqtt_config.instance_id}p{n}") for n in (0, 1)]
    ports = [free_port(), free_port()]
    paths = [
        write_config(
            tmp_path / f"config{n}.yaml",
            dataclasses.replace(cfg, mqtt=mqtts[n]),
            cloud,
            ports[n],
            database={"lease_time": LEASE_TIME},
        )
        for n in (0, 1)
    ]
    roots = [f"{m.base_topic}/{m.instance_id}" for m in mqtts]
    try:
        with Subscriber(mqtt_broker.host, mqtt_broker.port, *(f"{r}/#" for r in roots)) as sub:
            run(paths, ports, user_ids, daemons, sub, roots)
    finally:
        for m in mqtts:
            clear_retained(mqtt_broker.host, mqtt_broker.port, f"{m.base_topic}/#")
            clear_retained(mqtt_broker.host, mqtt_broker.port, f"{m.discovery_prefix}/#")
    with database.session() as db:
        sessions = db.execute(
            sa.select(GrillingSession.device_id, sa.func.count()).group_by(
                GrillingSession.device_id
            )
        ).all()
    assert all(n == 1 for _, n in sessions), f"a session duplicated: {sessions}"


def run(
    paths: list[Path],
    ports: list[int],
    user_ids: list[int],
    daemons: list[Daemon],
    sub: Subscriber,
    roots: list[str],
) -> None:
    everyone = set(user_ids)
    procs = [Daemon(path) for path in paths]
    daemons.extend(procs)

    def shared() -> bool:
        reports = [health(port) for port in ports]
        mine = [polled(r) for r in reports]
        held = [r.get("leases", {}).get("held") for r in reports]
        return held == [2, 2] and mine[0] | mine[1] == everyone and not mine[0] & mine[1]

    wait_until(shared, "each process polling two accounts, every account polled")

    victim = 0 if user_ids[0] in polled(health(ports[0])) else 1
    survivor = 1 - victim
    orphans = polled(health(ports[victim]))
    killed_at = datetime.now(UTC)
    started = time.monotonic()
    procs[victim].proc.send_signal(signal.SIGKILL)
    procs[victim].proc.wait(10)
    taken: list[float] = []

    def taken_over() -> bool:
        report = health(ports[survivor])
        if report.get("leases", {}).get("held") == len(everyone) and not taken:
            taken.append(time.monotonic() - started)
        return polled(report) == everyone and orphans <= polled(report, since=killed_at)

    wait_until(taken_over, "the survivor polling the dead one's accounts", timeout=4 * LEASE_TIME)
    repolled = time.monotonic() - started
    print(f"kill -9: leases taken after {taken[0]:.2f} s, all polled after {repolled:.2f} s")
    assert taken[0] <= LEASE_TIME + 0.5  # + the time one health request takes
    assert repolled <= LEASE_TIME + 1.0  # + the poll's jitter (at most 1 s here)

    again = Daemon(paths[victim])  # a new process (a new identity) takes its share back
    daemons.append(again)
    wait_until(shared, "the restarted process polling its two accounts again", timeout=30)

    sub.sync()
    ids = [
        (m.topic, m.json().get("event_id"))
        for m in sub.snapshot()
        if m.topic.endswith("/event") and any(m.topic.startswith(r) for r in roots)
    ]
    ids = [i for i in ids if i[1]]
    assert len(ids) == len(set(ids)), f"an event published twice: {ids}"
    for proc in (procs[survivor], again):
        proc.proc.send_signal(signal.SIGTERM)
    for proc in (procs[survivor], again):
        assert proc.proc.wait(15) == 0
        assert "Traceback" not in "\n".join(proc.lines)


def test_the_bridge_status_goes_offline_when_every_process_died_without_a_supervisor(
    tmp_path: Path,
    linked: tuple[Config, CloudSimulator],
    mqtt_broker: Broker,
    mqtt_config: MqttConfig,
    daemons: list[Daemon],
) -> None:
    """Two ``grillstats-bridge@`` instances (``run --processes 2 --process-index I``, no
    supervisor): ``<root>/status`` stays online when one is killed (the other answers its
    will) and goes offline when the last one is killed too."""
    cfg, cloud = linked
    path = write_config(
        tmp_path / "config.yaml", cfg, cloud, free_ports(2), database={"lease_time": LEASE_TIME}
    )
    status = f"{mqtt_config.base_topic}/{mqtt_config.instance_id}/status"

    def said(sub: Subscriber) -> list[str]:
        return [m.text for m in sub.snapshot() if m.topic == status]

    with Subscriber(mqtt_broker.host, mqtt_broker.port, status) as sub:
        procs = []
        for index in (0, 1):
            procs.append(Daemon(path, "--processes", "2", "--process-index", str(index)))
            daemons.append(procs[-1])
            procs[-1].wait_for_line("started: database")
        sub.wait_for(lambda ms: said(sub)[-1:] == ["online"], what="online")

        sub.clear()
        procs[0].proc.send_signal(signal.SIGKILL)
        procs[0].proc.wait(10)
        sub.wait_for(lambda ms: said(sub)[:1] == ["offline"] and said(sub)[-1:] == ["online"])
        assert retained(mqtt_broker.host, mqtt_broker.port, status) == {status: b"online"}

        sub.clear()
        procs[1].proc.send_signal(signal.SIGKILL)
        procs[1].proc.wait(10)
        sub.wait_for(lambda ms: said(sub)[-1:] == ["offline"], what="offline")
    assert retained(mqtt_broker.host, mqtt_broker.port, status) == {status: b"offline"}
