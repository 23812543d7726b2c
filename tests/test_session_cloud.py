"""Sessions from real polls: the simulator over HTTP, the real poller, the database (both
backends). The daemon, MQTT and high-speed end-to-end runs come with phase 2."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from grillstats_bridge.config import Config
from grillstats_bridge.sessions.model import ChangeKind, SessionChange
from grillstats_bridge.sessions.service import SessionService, probe_statistics
from grillstats_bridge.store.db import Database
from grillstats_bridge.store.devices import sync_poll
from grillstats_bridge.store.models import GrillingSession
from grillstats_bridge.store.readings import write_readings
from tests.fixtures.cloud import MakeCloud
from tests.test_accounts import link, poller_for

KETTLE = "10:06:1C:3B:55:12"


def test_a_cook_polled_from_the_simulator_is_one_session(
    database: Database, config: Config, make_cloud: MakeCloud
) -> None:
    cloud = make_cloud("hot_and_fast", at=0)
    user_id = link(
        database, config, cloud, tw_email="grillmaster@example.com", password="hot-fast-350!"
    )
    poller = poller_for(database, config, cloud, user_id)
    service = SessionService(config.sessions)
    changes: list[SessionChange] = []
    try:
        while cloud.now() <= cloud.scenario.end:
            poll = poller.poll()
            sync_poll(database, poll)
            with database.transaction() as db:
                write_readings(db, poll.readings)
                changes += service.process(db, poll)
            cloud.advance(60)
    finally:
        poller.close()
    # The data stops with the kettle still hot: the bridge's clock runs on without it.
    with database.transaction() as db:
        changes += service.tick(db, cloud.scenario.end + timedelta(hours=2))

    kinds = [c.kind for c in changes if c.kind is not ChangeKind.UPDATED]
    assert kinds == [ChangeKind.STARTED, ChangeKind.ENDED]
    with database.transaction() as db:
        (row,) = db.scalars(sa.select(GrillingSession))
        probes = probe_statistics(db, row.id)
    assert (row.device_id, row.user_id, row.status) == (KETTLE, user_id, "completed")
    assert row.start_time - cloud.scenario.start <= timedelta(minutes=3)
    assert row.end_time is not None
    length = row.end_time - row.start_time
    assert timedelta(hours=2, minutes=20) <= length <= timedelta(hours=2, minutes=31)
    assert row.name is not None and row.name.startswith("Hot and fast · 2 h")
    assert [p.probe for p in probes] == [1, 2]
    assert probes[0].max_temperature is not None and 340 <= probes[0].max_temperature <= 365
    # The chicken probe, pulled at 1 h 50 m, reached 165 °F.
    assert probes[1].max_temperature is not None and 164 <= probes[1].max_temperature <= 172
