"""Health endpoint, systemd notifications, clocks and the readings store."""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from grillstats_bridge.bridge.health import HealthServer
from grillstats_bridge.bridge.sdnotify import Notifier
from grillstats_bridge.clock import RealClock, SimClock
from grillstats_bridge.domain import Reading, Unit
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import ReadingRow
from grillstats_bridge.store.readings import (
    ReadingBuffer,
    prune_readings,
    readings_between,
    write_readings,
)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_health_endpoint_codes() -> None:
    state = {"healthy": True}

    def report() -> tuple[bool, dict[str, Any]]:
        if state.get("broken"):
            raise RuntimeError("boom")
        return state["healthy"], {"status": "ok" if state["healthy"] else "degraded"}

    server = HealthServer("127.0.0.1", 0, report)
    server.start()
    try:
        assert get(server.url) == (200, {"status": "ok"})
        state["healthy"] = False
        assert get(server.url) == (503, {"status": "degraded"})
        state["broken"] = True
        code, body = get(server.url)
        assert code == 503 and body["status"] == "error"
        code, _ = get(server.url.replace("/health", "/nope"))
        assert code == 404
    finally:
        server.stop()


def test_health_drops_idle_connections() -> None:
    server = HealthServer("127.0.0.1", 0, lambda: (True, {"status": "ok"}), idle_timeout=0.3)
    server.start()
    idle = socket.create_connection(server.address, timeout=30)
    try:
        # a client that never sends its request: the server hangs up on it
        assert idle.recv(1024) == b""
        assert get(server.url) == (200, {"status": "ok"})
    finally:
        idle.close()
        server.stop()


def read_all(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(4096):
        answer += chunk
    return answer


def test_health_caps_its_threads() -> None:
    server = HealthServer("127.0.0.1", 0, lambda: (True, {"status": "ok"}), max_connections=3)
    server.start()
    clients = [socket.create_connection(server.address, timeout=30) for _ in range(8)]
    try:
        # past the cap, a connection is answered 503 and closed at once; three are held
        held = list(clients)
        while len(held) > 3:
            answered, _, _ = select.select(held, [], [], 10)
            assert answered, "the server kept a thread for every connection"
            for sock in answered:
                assert read_all(sock).startswith(b"HTTP/1.0 503")
                held.remove(sock)
        assert server.connections == 3
        for sock in held:  # the held ones are served
            sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            assert read_all(sock).startswith(b"HTTP/1.0 200")
    finally:
        for sock in clients:
            sock.close()
        server.stop()


def test_sd_notify_sends_datagrams(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        notifier = Notifier(
            {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}
        )
        assert notifier.enabled and notifier.watchdog_interval == 10.0
        notifier.ready("polling 2 accounts")
        assert sock.recv(256) == b"READY=1\nSTATUS=polling 2 accounts"
        notifier.watchdog()
        assert sock.recv(256) == b"WATCHDOG=1"
        notifier.stopping()
        assert sock.recv(256) == b"STOPPING=1\nSTATUS=stopping"
    finally:
        sock.close()
    outside = Notifier({})
    assert not outside.enabled and outside.watchdog_interval is None
    assert outside.notify(ready=1) is False
    assert (
        Notifier(
            {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}
        ).watchdog_interval
        is None
    )


def test_clocks() -> None:
    manual = SimClock(T0, speed=0)
    assert manual.advance(90) == T0 + timedelta(seconds=90)
    assert manual.now() == T0 + timedelta(seconds=90)
    assert manual.wait(threading.Event(), 1000) is False
    scaled = SimClock(T0, speed=3600)
    event = threading.Event()
    assert scaled.wait(event, 36) is False  # 36 simulated seconds = 10 ms
    assert scaled.now() - T0 >= timedelta(seconds=36)
    event.set()
    assert scaled.wait(event, 3600) and RealClock().wait(event, 10)
    with pytest.raises(ValueError):
        SimClock(T0, speed=-1)


def readings(serial: str, n: int, start: datetime = T0, step: float = 15) -> list[Reading]:
    return [
        Reading(
            serial=serial,
            channel=1,
            time=start + timedelta(seconds=i * step),
            value=200.0 + i,
            unit=Unit.FAHRENHEIT,
        )
        for i in range(n)
    ]


def test_write_is_idempotent_and_skips_unplugged(database: Database) -> None:
    batch = readings("10:06:1C:6F:47:70", 50)
    unplugged = Reading(
        serial="10:06:1C:6F:47:70", channel=2, time=T0, value=None, unit=Unit.FAHRENHEIT
    )
    with database.transaction() as session:
        assert write_readings(session, [*batch, unplugged]) == 50
    with database.transaction() as session:
        write_readings(
            session, batch[40:] + readings("10:06:1C:6F:47:70", 5, start=T0 + timedelta(hours=1))
        )
    with database.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ReadingRow)) == 55
        rows = readings_between(
            session, "10:06:1C:6F:47:70", 1, T0 + timedelta(seconds=30), T0 + timedelta(seconds=75)
        )
        assert [r.value for r in rows] == [202.0, 203.0, 204.0]
        assert rows[0].time == T0 + timedelta(seconds=30) and rows[0].unit == "F"


def test_prune_in_batches(database: Database) -> None:
    with database.transaction() as session:
        write_readings(session, readings("M1", 120, start=T0 - timedelta(days=100), step=60))
        write_readings(session, readings("M1", 10, start=T0))
    with database.transaction() as session:
        assert prune_readings(session, T0 - timedelta(days=90), batch=50) == 120
    with database.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ReadingRow)) == 10


def test_buffer_is_bounded_and_keeps_order() -> None:
    buffer: ReadingBuffer[Reading] = ReadingBuffer(capacity=100)
    buffer.extend(readings("A", 150))
    assert len(buffer) == 100 and buffer.dropped == 50
    taken = buffer.take()
    assert taken[0].value == 250.0 and len(buffer) == 0
    buffer.extend(readings("B", 3))
    buffer.put_back(taken[-2:])
    assert [r.serial for r in buffer.take()] == ["A", "A", "B", "B", "B"]
