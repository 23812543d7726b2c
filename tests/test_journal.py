"""Nothing is dropped at a stop: the outage buffer goes to the journal and comes back."""

from __future__ import annotations

import logging
import os
import re
import signal
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from grillstats_bridge.bridge.daemon import Bridge
from grillstats_bridge.config import Config
from grillstats_bridge.domain import Poll, Reading, Unit
from grillstats_bridge.simulator.server import CloudSimulator
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.journal import Journal, JournalError, journal_path
from grillstats_bridge.store.models import AlertHistory, ReadingRow
from tests.fixtures.bridge import MakeRig
from tests.fixtures.mqtt import Subscriber, TcpProxy, free_port
from tests.test_daemon import add_cook_alerts, count, events
from tests.test_daemon_faults import pg_proxy, pg_proxy_rig, settle, unpublished
from tests.test_daemon_process import Daemon, daemons, get_json, linked, wait_until, write_config

__all__ = ["daemons", "linked", "pg_proxy"]  # fixtures, used by name

T0 = datetime(2026, 7, 4, 12, 0, tzinfo=UTC)


def reading(n: int, value: float | None = 200.5) -> Reading:
    return Reading(
        serial="S-1",
        channel=1 + n % 2,
        time=T0.replace(minute=n),
        value=value,
        unit=Unit.FAHRENHEIT,
    )


def owned(n: int, value: float | None = 200.5, user_id: int = 1) -> tuple[int, Reading]:
    return (user_id, reading(n, value))


def test_journal_round_trip_is_owner_only(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    assert journal.load() == [] and not journal.exists()
    # each reading keeps the user whose poll brought it (only their devices are stored)
    saved = [owned(n, user_id=1 + n % 2) for n in range(5)] + [owned(7, None)]
    old = os.umask(0o022)
    try:
        journal.save(saved)
    finally:
        os.umask(old)
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600
    assert journal.load() == saved
    journal.save(saved[:2])  # replaced whole, not appended
    assert journal.load() == saved[:2]
    journal.clear()
    assert not journal.exists()


def test_unreadable_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.save([owned(1), owned(2)])
    with journal.path.open("a", encoding="utf-8") as fh:
        fh.write('{"serial": "S-1", "channel": 1}\nnot json\n')
        fh.write('{"serial":"S-1","channel":1,"time":"2026-07-04T12:01:00+00:00","value":1,')
        fh.write('"unit":"F"}\n')  # no user: whose device it is is unknown
    assert journal.load() == [owned(1), owned(2)]
    assert journal.skipped == 3


def test_a_journal_that_cannot_be_written_says_why(tmp_path: Path) -> None:
    (tmp_path / "j.jsonl").mkdir()  # even root cannot replace a directory with a file
    with pytest.raises(JournalError, match=r"cannot write .*j\.jsonl"):
        Journal(tmp_path / "j.jsonl").save([owned(1)])


# A SQLite file does not go away: the outage is a PostgreSQL server cut off behind a proxy.
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_stop_during_an_outage_loses_nothing(
    make_rig: MakeRig,
    pg_url: str,
    pg_proxy: TcpProxy,
    subscriber: Subscriber,
    database: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    rig, db = pg_proxy_rig(make_rig, pg_url, pg_proxy)
    try:
        add_cook_alerts(rig)
        rig.run_for(30 * 60)
        pg_proxy.cut()
        rig.run_for(40 * 60)  # the pit alert's moment passes while the database is away
        assert not rig.bridge.pipeline.database_ok
        buffered = len(rig.bridge.buffer)
        assert buffered > 100
        polled = rig.bridge.stats.values
        assert count(database, ReadingRow) < polled
        assert count(database, AlertHistory) == 0

        rig.bridge.shutdown()  # what SIGTERM does
        assert rig.bridge.lost == 0
        path = journal_path(rig.config.security)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(Journal(path).load()) == buffered
        assert f"{buffered} buffered readings saved to {path}" in caplog.text

        pg_proxy.restore()
        subscriber.sync()
        subscriber.clear()
        rig.bridge = Bridge(rig.config, clock=rig.cloud.clock, database=db)
        rig.bridge.start(threads=False)  # the replay runs here, before any poll
        assert count(database, ReadingRow) == polled  # every reading polled is stored
        assert count(database, AlertHistory) == 1  # and the firing they cause is there
        assert f"journal: {buffered} readings saved at the last stop replayed (1 alert" in (
            caplog.text
        )
        assert not path.exists()
        assert rig.bridge.mqtt.wait_ready(10)
        rig.bridge.step()
        settle(rig)
        subscriber.wait_for(lambda ms: len(events(subscriber, rig)) >= 1, what="the firing")
        assert [e["name"] for e in events(subscriber, rig)] == ["Pit hot"]
        assert unpublished(database) == 0
        rig.bridge.shutdown()
        rig.bridge = Bridge(rig.config, clock=rig.cloud.clock, database=db)
        rig.bridge.start(threads=False)  # nothing replayed twice
        assert count(database, AlertHistory) == 1
    finally:
        rig.bridge.shutdown()
        db.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_journal_that_cannot_be_written_is_an_error_with_the_count(
    make_rig: MakeRig,
    pg_url: str,
    pg_proxy: TcpProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig, db = pg_proxy_rig(make_rig, pg_url, pg_proxy)
    try:
        rig.run_for(10 * 60)
        pg_proxy.cut()
        rig.run_for(10 * 60)
        buffered = len(rig.bridge.buffer)
        assert buffered > 0
        journal_path(rig.config.security).mkdir()
        rig.bridge.shutdown()
        assert rig.bridge.lost == buffered  # `run` exits 1 on this
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert any(m.startswith(f"{buffered} buffered readings lost: the journal ") for m in errors)
    finally:
        rig.bridge.shutdown()
        db.dispose()


def proxied_daemon_config(
    tmp_path: Path, linked: tuple[Config, CloudSimulator], pg_url: str, proxy: TcpProxy
) -> tuple[Path, int]:
    config, cloud = linked
    url = sa.engine.make_url(pg_url).set(host=proxy.host, port=proxy.port)
    port = free_port()
    database = {"url": url.render_as_string(hide_password=False), "pool_timeout": 2}
    return write_config(tmp_path / "config.yaml", config, cloud, port, database=database), port


def buffer_during_an_outage(daemon: Daemon, port: int, proxy: TcpProxy) -> None:
    health = f"http://127.0.0.1:{port}/health"
    wait_until(lambda: get_json(health)[1].get("pipeline", {}).get("polls", 0) >= 1, "a poll")
    proxy.cut()
    wait_until(
        lambda: get_json(health)[1].get("database", {}).get("buffered_readings", 0) > 0,
        "readings buffered during the outage",
        timeout=120,
    )


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_sigterm_during_an_outage_saves_them_and_the_next_start_replays_them(
    tmp_path: Path,
    linked: tuple[Config, CloudSimulator],
    daemons: list[Daemon],
    pg_url: str,
    pg_proxy: TcpProxy,
) -> None:
    path, port = proxied_daemon_config(tmp_path, linked, pg_url, pg_proxy)
    first = Daemon(path)
    daemons.append(first)
    buffer_during_an_outage(first, port, pg_proxy)
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(30) == 0
    saved = re.search(r"(\d+) buffered readings saved to", first.wait_for_line("readings saved"))
    assert saved is not None and int(saved.group(1)) > 0
    journal = journal_path(linked[0].security)
    assert len(Journal(journal).load()) == int(saved.group(1))

    pg_proxy.restore()
    second = Daemon(path)
    daemons.append(second)
    second.wait_for_line(f"journal: {saved.group(1)} readings saved at the last stop replayed")
    wait_until(lambda: not journal.exists(), "the journal removed once stored")
    assert "Traceback" not in "\n".join(first.lines + second.lines)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_run_exits_1_when_the_journal_cannot_be_written(
    tmp_path: Path,
    linked: tuple[Config, CloudSimulator],
    daemons: list[Daemon],
    pg_url: str,
    pg_proxy: TcpProxy,
) -> None:
    path, port = proxied_daemon_config(tmp_path, linked, pg_url, pg_proxy)
    daemon = Daemon(path)
    daemons.append(daemon)
    buffer_during_an_outage(daemon, port, pg_proxy)
    journal_path(linked[0].security).mkdir()  # cannot be replaced by a file
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 1
    line = daemon.wait_for_line("buffered readings lost: the journal")
    assert re.search(r"ERROR .*\d+ buffered readings lost: the journal cannot write ", line), line
    assert "Traceback" not in "\n".join(daemon.lines)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_stop_while_a_write_hangs_keeps_what_that_write_holds(
    make_rig: MakeRig, pg_url: str, pg_proxy: TcpProxy, database: Database
) -> None:
    """A database host that stops answering (no refusal, no reset): the transaction that
    took the buffer hangs when the stop comes, so the buffer alone would be empty."""
    rig, db = pg_proxy_rig(make_rig, pg_url, pg_proxy)
    pipeline = rig.bridge.pipeline
    try:
        rig.run_for(10 * 60)
        buffered = [(rig.user_id, reading(n)) for n in range(3)]
        pipeline.buffer.extend(buffered)
        polled = Poll(
            user_id=rig.user_id, polled_at=rig.now, devices=(), readings=(reading(9),), malformed=1
        )
        pg_proxy.hold_replies()
        writer = threading.Thread(target=pipeline.process, args=([polled], rig.now), daemon=True)
        writer.start()
        while pipeline.buffer and writer.is_alive():  # until the transaction took the buffer
            writer.join(0.01)
        assert len(pipeline.buffer) == 0 and writer.is_alive()
        queued = [(rig.user_id, reading(10))]
        assert pipeline.persist(queued, in_flight=True) == 0
        saved = Journal(journal_path(rig.config.security)).load()
        assert saved == [*buffered, (rig.user_id, reading(9)), *queued]
    finally:
        pg_proxy.restore()
        rig.bridge.shutdown()
        db.dispose()
