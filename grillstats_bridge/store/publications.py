"""The ``mqtt_publications`` rows: every retained topic an instance published, for cleanup.

Rows are plain ``(topic, owner, kind)`` tuples: the publisher (Home Assistant's
side) keeps the records, the daemon hands them here on its pipeline thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from grillstats_bridge.store.db import Database
from grillstats_bridge.store.models import MqttPublication

PublicationRow = tuple[str, str, str]  # topic, owner, kind (config, state)


class PublicationStore:
    """The ``mqtt_publications`` table for one instance."""

    def __init__(self, database: Database, instance_id: str) -> None:
        self.database = database
        self.instance_id = instance_id

    def load(self) -> list[PublicationRow]:
        with self.database.session() as session:
            rows = session.scalars(
                sa.select(MqttPublication).where(MqttPublication.instance_id == self.instance_id)
            )
            return [(r.topic, r.owner, r.kind) for r in rows]

    def apply(self, added: Sequence[PublicationRow], removed: Sequence[str]) -> None:
        """Remember ``added`` (or move them to their new owner), forget ``removed``."""
        row = MqttPublication
        with self.database.transaction() as session:
            # Replacing rows keeps this portable (no dialect-specific upsert).
            for chunk in _chunks([*removed, *(topic for topic, _, _ in added)], 500):
                session.execute(
                    sa.delete(row).where(row.instance_id == self.instance_id, row.topic.in_(chunk))
                )
            if added:
                session.execute(
                    sa.insert(row),
                    [
                        {"instance_id": self.instance_id, "topic": t, "owner": o, "kind": k}
                        for t, o, k in added
                    ],
                )

    def forget_all(self) -> int:
        """Forget every topic of this instance; returns how many there were."""
        row = MqttPublication
        with self.database.transaction() as session:
            count = session.scalar(
                sa.select(sa.func.count()).where(row.instance_id == self.instance_id)
            )
            session.execute(sa.delete(row).where(row.instance_id == self.instance_id))
            return int(count or 0)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
