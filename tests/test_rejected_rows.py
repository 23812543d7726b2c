"""Rows the database would refuse: cleaned at the door, or refused alone, never the batch."""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

import grillstats_bridge.simulator
from grillstats_bridge.domain import Poll, Reading
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import Device, ProbeRow, ReadingRow
from tests.fixtures.bridge import MakeRig
from tests.fixtures.cloud import SIGNALS
from tests.test_daemon import FAST, count

SCENARIOS = Path(grillstats_bridge.simulator.__file__).parent / "scenarios"
LONG_SERIAL = "X" * 60  # devices.device_id holds 50


def odd_brisket(tmp_path: Path, flavour: str) -> Path:
    """The brisket cook, with a NUL and a bell in a label, a 300-character probe label and
    a device whose serial is too long for the database."""
    text = (SCENARIOS / "brisket.yaml").read_text()
    text = text.replace("label: Offset Smoker", 'label: "Offset\\0 Smoker\\a"')
    text = text.replace(
        "{number: 2, label: Brisket A Flat,",
        '{number: 2, label: "' + "Flat " * 59 + flavour[:4] + '",',
    )
    text = text.replace(
        "\nevents:",
        f"""
  - serial: "{LONG_SERIAL}"
    account: pitmaster@example.com
    kind: rfx_meat
    label: Too long
    gateway: "10:06:1C:8A:21:04"
    channels:
      - {{number: 1, label: Tip, curve: brisket_b}}

events:""",
        1,
    )
    path = tmp_path / "odd_brisket.yaml"
    path.write_text(text)
    return path


def test_odd_cloud_text_is_stored_cleaned_and_a_long_serial_refused(
    make_rig: MakeRig, database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        # the label differs per backend: a text is warned of once per process
        rig = make_rig(str(odd_brisket(tmp_path, database.dialect)), **FAST)
        rig.run_for(30 * 60)
    with database.session() as db:
        label = db.scalar(sa.select(Device.cloud_label).where(Device.device_id == SIGNALS))
        flat = db.scalar(
            sa.select(ProbeRow.label)
            .join(Device)
            .where(Device.device_id == SIGNALS, ProbeRow.channel == 2)
        )
        serials = set(db.scalars(sa.select(Device.device_id)))
    assert label == "Offset Smoker"  # NUL and BEL gone
    assert flat is not None and len(flat) == 100 and flat.startswith("Flat Flat")
    assert LONG_SERIAL not in serials and len(serials) == 4
    # every reading of the other devices is stored, nothing refused, /health is happy
    assert count(database, ReadingRow) == rig.bridge.stats.values > 0
    healthy, report = rig.bridge.health_report()
    assert healthy and report["status"] == "ok" and report["pipeline"]["rejected_polls"] == 0
    # one warning per device and field, however many polls
    messages = [r.getMessage() for r in caplog.records]
    assert sum("probe 2 label is 299 characters, cut to the 100" in m for m in messages) == 1
    assert sum("longer than the 50 the database keeps" in m for m in messages) == 1
    assert not any("Traceback" in m for m in messages)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # PostgreSQL refuses NUL
def test_a_poll_the_database_refuses_is_rejected_alone(
    make_rig: MakeRig, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    rig = make_rig("brisket", **FAST)
    rig.run_for(10 * 60)
    before = count(database, ReadingRow)
    info = rig.bridge.accounts[rig.user_id]
    signals = next(d for d in info.devices if d.serial == SIGNALS)
    now = rig.now

    def readings(minutes: int) -> tuple[Reading, ...]:
        at = now + timedelta(minutes=minutes)
        unit = signals.probes[0].unit
        return tuple(
            Reading(serial=SIGNALS, channel=ch, time=at, value=200.0 + ch, unit=unit)
            for ch in (1, 2)
        )

    # A label that never came through the parser (which strips NUL): the database refuses it.
    bad = Poll(
        user_id=rig.user_id,
        polled_at=now,
        devices=(dataclasses.replace(signals, label="bad\x00label"),),
        readings=readings(1),
    )
    good = Poll(user_id=rig.user_id, polled_at=now, devices=(signals,), readings=readings(2))
    rig.bridge.buffer.extend((rig.user_id, r) for r in readings(3))  # left by an outage
    with caplog.at_level(logging.ERROR, logger="grillstats_bridge.bridge.pipeline"):
        outcome = rig.bridge.pipeline.process([bad, good], now)
    assert outcome.database_ok and outcome.rejected == 1
    assert outcome.stored == 2 and outcome.replayed == 2  # the good poll and the buffer
    assert count(database, ReadingRow) == before + 4 and len(rig.bridge.buffer) == 0
    refused = [r.getMessage() for r in caplog.records if r.name.endswith("bridge.pipeline")]
    assert len(refused) == 1 and "its 2 readings are not stored" in refused[0]
    assert "bad" not in refused[0]  # the reason, not the values
    healthy, report = rig.bridge.health_report()
    assert healthy and report["status"] == "degraded"
    assert report["pipeline"]["rejected_polls"] == 1
    assert report["pipeline"]["rejected_readings"] == 2
    assert "NUL" in report["pipeline"]["last_rejection"]
    # and the daemon goes on storing what comes next
    rig.run_for(10 * 60)
    assert rig.bridge.pipeline.database_ok and count(database, ReadingRow) > before + 4
