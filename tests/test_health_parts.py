"""Faults are visible: each part of /health says ok, degraded or failing, and why."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from grillstats_bridge.bridge import status
from grillstats_bridge.bridge.pipeline import JournalInfo
from grillstats_bridge.store.db import Database
from tests.fixtures.bridge import MakeRig
from tests.fixtures.mqtt import TcpProxy
from tests.test_daemon import FAST
from tests.test_daemon_faults import first_failure, pg_proxy, pg_proxy_rig

__all__ = ["pg_proxy"]  # the fixture, used by name


def test_a_healthy_bridge_says_ok_for_every_part(make_rig: MakeRig) -> None:
    rig = make_rig("brisket", **FAST)
    linking = rig.cloud.request_count()  # account link's sign-in, before the bridge
    rig.run_for(20 * 60)
    healthy, report = rig.bridge.health_report()
    assert healthy and report["status"] == "ok"
    parts = [report["database"], report["pipeline"], report["journal"], *report["accounts"]]
    assert [(p["health"], p["reason"]) for p in parts] == [("ok", None)] * len(parts)
    assert report["pipeline"]["last_progress"] == rig.bridge.pipeline.last_progress is not None
    state = rig.bridge.bridge_status()
    # Every request of the last hour counted (the bridge's own: its polls and sign-in).
    assert 0 < state.cloud_requests_hour == rig.cloud.request_count() - linking
    assert state.accounts_failing == 0 and state.rejected_readings == 0
    rig.run_for(2 * 3600)
    assert rig.bridge.bridge_status().cloud_requests_hour < rig.cloud.request_count()


@pytest.mark.parametrize(
    ("fail", "reason"),
    [
        (dict(status=429, retry_after=600), "parked by the cloud's Retry-After until "),
        (dict(status=503), "backing off until "),
    ],
    ids=["retry-after", "503"],
)
def test_an_account_in_trouble_says_until_when(
    make_rig: MakeRig, fail: dict[str, int], reason: str
) -> None:
    rig = make_rig("brisket", **FAST)
    rig.run_for(10 * 60)
    fail = dict(fail)
    code = fail.pop("status")
    rig.cloud.fail_next(code, **fail)  # type: ignore[arg-type]
    first_failure(rig)
    healthy, report = rig.bridge.health_report()
    (account,) = report["accounts"]
    until = rig.bridge.scheduler.accounts[rig.user_id].next_poll.isoformat(timespec="seconds")
    assert healthy and report["status"] == "degraded"
    assert account["health"] == "degraded" and account["reason"].startswith(reason + until)
    assert rig.bridge.bridge_status().accounts_failing == 1


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_database_outage_is_failing_then_ok(
    make_rig: MakeRig, pg_url: str, pg_proxy: TcpProxy, database: Database
) -> None:
    rig, db = pg_proxy_rig(make_rig, pg_url, pg_proxy)
    try:
        rig.run_for(10 * 60)
        pg_proxy.cut()
        rig.run_for(10 * 60)
        healthy, report = rig.bridge.health_report()
        assert not healthy and report["database"]["health"] == "failing"
        buffered = len(rig.bridge.buffer)
        assert report["database"]["reason"].endswith(f"{buffered} readings wait in memory")
        pg_proxy.restore()
        rig.run_for(5 * 60)
        healthy, report = rig.bridge.health_report()
        assert healthy and report["database"]["health"] == "ok"
    finally:
        rig.bridge.shutdown()
        db.dispose()


def test_parts_in_words() -> None:
    journal = JournalInfo(Path("/state/j.jsonl"), None, 0, 12, True)
    assert status.journal_health(journal)["health"] == "degraded"
    broken = JournalInfo(
        Path("/state/j.jsonl"), "cannot write /state/j.jsonl: Read-only", 0, 0, False
    )
    part = status.journal_health(broken)
    assert (part["health"], part["reason"]) == ("failing", "cannot write /state/j.jsonl: Read-only")
    assert status.database_health(True, 0, 3, None) == {
        "health": "degraded",
        "reason": "3 buffered readings dropped since the start (buffer full)",
    }


def test_the_start_up_line_names_the_health_port(
    make_rig: MakeRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rig = make_rig("brisket", start=False, http={"enabled": True, "port": 0})
    rig.bridge.start(threads=False)
    assert rig.bridge.health_server is not None
    url = rig.bridge.health_server.url
    assert any(
        "started: database" in r.getMessage() and f"health {url}," in r.getMessage()
        for r in caplog.records
    )
