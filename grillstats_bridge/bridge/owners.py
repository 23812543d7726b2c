"""Who owns each device, as the daemon's publishing threads need it, without the database.

A poll's states are published from the thread that polled, before the pipeline
syncs the poll: this map (loaded at start, then kept by every sync's result)
says which of a poll's devices are its account's, so that a device registered to
another user is not published for this one. A device the map does not know is
published: its first sync registers it to the account (or reports it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grillstats_bridge.domain import Device
from grillstats_bridge.store.devices import SyncResult
from grillstats_bridge.store.models import Device as DeviceRow


class Owners:
    """serial -> user id. Read by the poll workers, written by the pipeline thread."""

    def __init__(self) -> None:
        self._owners: dict[str, int] = {}

    def load(self, db: Session) -> None:
        rows = db.execute(sa.select(DeviceRow.device_id, DeviceRow.user_id))
        self._owners = {serial: user_id for serial, user_id in rows}

    def own(self, user_id: int, devices: Sequence[Device]) -> list[Device]:
        """The devices of a poll of ``user_id`` that are that user's."""
        owners = self._owners
        return [d for d in devices if owners.get(d.serial, user_id) == user_id]

    def note(self, syncs: Mapping[int, SyncResult]) -> None:
        """What the syncs of some polls said (a device transferred shows here)."""
        for user_id, result in syncs.items():
            for serial in result.owned():
                self._owners[serial] = user_id
            self._owners.update(result.claimed_by)
