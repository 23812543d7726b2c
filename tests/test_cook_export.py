"""The cook figures of a session (estimate, band, state, stall, ready) in ``session show`` and
the CSV and JSON exports, on SQLite and PostgreSQL, after a cook through the pipeline."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta

import pytest

from grillstats_bridge.sessions.service import COOK_COLUMNS
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import Device, SessionCookProbe, User
from tests.fixtures.cli import Cli
from tests.fixtures.web import ALICE, WebRig, log_in
from tests.test_cook import T0, H
from tests.test_cook_service import SERIAL, cook, owner, pipeline
from tests.test_session_cli import cook as hot_and_fast

__all__ = ["owner"]  # the fixture: a target of 203 °F on channel 2

DONE = T0 + timedelta(hours=7 + 41.5 / 13)  # the curve reaches 203 °F (tests/test_cook.brisket)


def at(value: object) -> datetime:
    assert isinstance(value, str)
    return datetime.fromisoformat(value)


def export(cli: Cli, fmt: str) -> str:
    code, out, _ = cli("session", "export", "1", "--format", fmt)
    assert code == 0
    return out


def test_the_estimate_its_band_and_the_stall_are_exported_and_shown(
    cli: Cli, database: Database, owner: int
) -> None:
    pipe = pipeline(database)
    cook(pipe, owner, 0, 8 * H)  # stalled from 4 h to 7 h, climbing again

    data = json.loads(export(cli, "json"))
    (figures,) = data["session"]["cook"]
    assert (figures["probe"], figures["target"], figures["unit"]) == (2, 203.0, "F")
    assert figures["cook_state"] == "cooking" and figures["ready_at"] is None
    done, low, high = at(figures["done_at"]), at(figures["done_low"]), at(figures["done_high"])
    last = pipe.cook.last[(SERIAL, 2)]  # what the daemon publishes: the same figures
    assert (done, low, high) == (last.done_at, last.low, last.high) and low <= done <= high
    assert figures["estimate_method"] == last.method.value
    assert figures["cook_method"] == "auto"  # nothing declared
    start, end = at(figures["stall_start"]), at(figures["stall_end"])
    assert abs(start - (T0 + timedelta(hours=4))) <= timedelta(minutes=10)
    assert timedelta(0) <= end - (T0 + timedelta(hours=7)) <= timedelta(minutes=35)
    assert figures["stall_seconds"] == pytest.approx((end - start).total_seconds(), abs=1)
    assert at(figures["as_of"]) == T0 + timedelta(hours=8)
    assert 50 < figures["progress"] < 100

    lines = list(csv.reader(io.StringIO(export(cli, "csv"))))
    blank = lines.index([])
    assert lines[0] == ["time", "probe", "value", "unit"]  # today's columns, unchanged
    assert all(len(row) == 4 for row in lines[1:blank]) and blank - 1 == len(data["readings"])
    assert lines[blank + 1] == list(COOK_COLUMNS)
    (row,) = lines[blank + 2 :]
    assert row == ["" if figures[c] is None else str(figures[c]) for c in COOK_COLUMNS]

    code, shown, _ = cli("session", "show", "1")
    assert code == 0
    table = shown.split("\n\n")[-1].splitlines()
    assert table[0].split()[:3] == ["PROBE", "TARGET", "STATE"] and "BAND (UTC)" in table[0]
    minutes = f"{done:%Y-%m-%d %H:%M}"
    assert table[1].split()[:4] == ["2", "203.0", "°F", "cooking"]
    assert f"{minutes} ({figures['estimate_method']})" in table[1]
    assert f"{low:%Y-%m-%d %H:%M} - {high:%Y-%m-%d %H:%M}" in table[1]
    assert f"{start:%Y-%m-%d %H:%M} - {end:%Y-%m-%d %H:%M} (" in table[1]

    cook(pipe, owner, 8 * H + 2 * 60, 11 * H)  # past the target
    (figures,) = json.loads(export(cli, "json"))["session"]["cook"]
    assert figures["cook_state"] in ("ready", "resting")
    assert abs(at(figures["ready_at"]) - DONE) < timedelta(minutes=10)
    assert at(figures["stall_start"]) == start  # the first stall stays
    _, shown, _ = cli("session", "show", "1")
    assert f"ready {at(figures['ready_at']):%Y-%m-%d %H:%M}" in shown


def test_the_cook_method_stays_on_the_session_after_the_target_is_gone(
    cli: Cli, database: Database, owner: int
) -> None:
    """A reverse sear declared while the session runs is what the export and ``session
    show`` say, from the next poll on, and still after the target alert is removed."""
    pipe = pipeline(database)
    cook(pipe, owner, 0, 1 * H)
    assert json.loads(export(cli, "json"))["session"]["cook"][0]["cook_method"] == "auto"
    code, out, _ = cli("alert", "method", "1", "reverse_sear")
    assert code == 0 and "cook method reverse_sear" in out
    cook(pipe, owner, 1 * H + 2 * 60, 2 * H)
    code, _, _ = cli("alert", "remove", "1")
    assert code == 0

    (figures,) = json.loads(export(cli, "json"))["session"]["cook"]
    assert figures["cook_method"] == "reverse_sear"
    lines = list(csv.reader(io.StringIO(export(cli, "csv"))))
    header, row = lines[lines.index([]) + 1 :]
    assert row[header.index("cook_method")] == "reverse_sear"
    _, shown, _ = cli("session", "show", "1")
    table = shown.split("\n\n")[-1].splitlines()
    assert table[0].split()[-1] == "METHOD" and table[1].split()[-1] == "reverse_sear"


def test_a_session_without_targets_exports_as_before(cli: Cli, database: Database) -> None:
    """No probe with a target: no second section in the CSV, an empty list in the JSON."""
    with database.transaction() as db:
        user = User(email="cook@example.com", password_hash="x")
        db.add(user)
        db.flush()
        db.add(Device(user_id=user.id, device_id="SIG-1"))
    hot_and_fast(database)
    lines = list(csv.reader(io.StringIO(export(cli, "csv"))))
    assert len(lines) > 200 and all(len(row) == 4 for row in lines)
    assert json.loads(export(cli, "json"))["session"]["cook"] == []


def test_the_web_apps_downloads_carry_them(web: WebRig) -> None:
    """``/sessions/ID/export.*`` write what ``session export`` writes, figures included."""
    session_id = web.alice.session_id
    with web.database.transaction() as db:
        db.add(
            SessionCookProbe(
                session_id=session_id,
                probe=1,
                unit="F",
                target=203.0,
                state="ready",
                method="done",
                value=204.0,
                progress=100.0,
                ready_at=T0,
                done_at=T0,
                done_low=T0,
                done_high=T0,
                stall_start=T0 - timedelta(hours=3),
                stall_end=T0 - timedelta(hours=1),
                stall_seconds=7200.0,
                updated_at=T0,
            )
        )
    client = web.client()
    log_in(client, ALICE)
    data = json.loads(client.get(f"/sessions/{session_id}/export.json").text)
    (figures,) = data["session"]["cook"]
    assert figures["cook_state"] == "ready" and figures["ready_at"] == T0.isoformat()
    assert figures["stall_seconds"] == 7200
    lines = list(csv.reader(io.StringIO(client.get(f"/sessions/{session_id}/export.csv").text)))
    blank = lines.index([])
    assert lines[blank + 1] == list(COOK_COLUMNS) and lines[blank + 2][0] == "1"
