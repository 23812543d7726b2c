"""Each session's cook figures in the database: what ``session show`` and the export print.

After every batch the estimate of each probe with a target goes on its device's active
session (``session_cook_probes``): the done-at estimate and its band, the state, the
progress, the cook method declared for the probe, the probe's first stall (start, then
end and length) and when it first reached its target. A session that ended keeps the
figures of its last poll.

:class:`Figures` keeps what it last wrote of each device's session, so that a batch
writes only the probes whose figures changed, in one statement (``store.sql.upsert``);
their rows are read again only for a new session, after a restart, or when the device
had no estimate for ``TRUSTED`` (another process may have polled it meanwhile: its
account's lease moved). ``updated_at`` is when a probe's figures last changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grillstats_bridge.cook import history
from grillstats_bridge.cook.model import (
    CookEvent,
    CookEventKind,
    CookMethod,
    CookState,
    Estimate,
    ProbeKey,
)
from grillstats_bridge.store.models import SessionCookProbe
from grillstats_bridge.store.sql import rollback_hook, upsert

_TABLE: sa.Table = SessionCookProbe.__table__  # type: ignore[assignment]
FIELDS = (
    "unit",
    "target",
    "state",
    "method",
    "cook_method",
    "value",
    "progress",
    "done_at",
    "done_low",
    "done_high",
    "ready_at",
    "stall_start",
    "stall_end",
    "stall_seconds",
)
_READY = FIELDS.index("ready_at")  # the first of the four kept from the first time on
_FORGET = "grillstats.cook.figures"
TRUSTED = timedelta(seconds=60)  # what was written is taken as still there this long
Row = tuple[Any, ...]  # a probe's values of FIELDS


class Figures:
    """The cook figures written on the sessions, remembered to write only what changed."""

    def __init__(self) -> None:
        # serial -> (its active session, probe -> the values last written there)
        self.written: dict[str, tuple[int, dict[int, Row]]] = {}
        self.seen: dict[str, datetime] = {}  # serial -> when its figures were last known

    def save(
        self,
        db: Session,
        estimates: Sequence[Estimate],
        events: Sequence[CookEvent],
        now: datetime,
        methods: Mapping[ProbeKey, str] | None = None,
    ) -> int:
        """Write the estimates on their devices' active sessions; how many probes changed.

        ``methods``: the cook method declared for a probe (``alerts.rules.probe_methods``:
        auto left out)."""
        methods = methods or {}
        if not estimates:
            return 0
        serials = sorted({e.serial for e in estimates})
        sessions = history.active_session_ids(db, serials)
        if not sessions:
            return 0
        unknown = {
            session_id: serial
            for serial, session_id in sessions.items()
            if self.written.get(serial, (None,))[0] != session_id
            or now - self.seen.get(serial, now - 2 * TRUSTED) > TRUSTED
        }
        if unknown:
            self._read(db, unknown)
        self.seen.update({serial: now for serial in sessions})
        ended = {(e.serial, e.channel): e for e in events if e.kind is CookEventKind.STALL_ENDED}
        changed: dict[tuple[str, int], Row] = {}
        for estimate in estimates:
            session_id = sessions.get(estimate.serial)
            if session_id is None:
                continue
            old = self.written[estimate.serial][1].get(estimate.channel)
            method = methods.get(estimate.key, CookMethod.AUTO.value)
            new = _figures(old, estimate, ended.get(estimate.key), method)
            if new != old:
                changed[estimate.key] = new
        if not changed:
            return 0
        # A rollback leaves the database as it was: what was written is not known then
        rollback_hook(db, (_FORGET, id(self)), lambda: _Forget(self))
        upsert(
            db,
            _TABLE,
            [
                {
                    "session_id": sessions[serial],
                    "probe": channel,
                    **dict(zip(FIELDS, row, strict=True)),
                    "updated_at": now,
                }
                for (serial, channel), row in sorted(changed.items())
            ],
            keys=("session_id", "probe"),
            update=(*FIELDS, "updated_at"),
        )
        for (serial, channel), row in changed.items():
            self.written[serial][1][channel] = row
        return len(changed)

    def _read(self, db: Session, sessions: dict[int, str]) -> None:
        """The stored figures of these sessions (session id -> its device)."""
        for session_id, serial in sessions.items():
            self.written[serial] = (session_id, {})
        columns = [_TABLE.c[name] for name in FIELDS]
        for session_id, probe, *row in db.execute(
            sa.select(_TABLE.c.session_id, _TABLE.c.probe, *columns).where(
                _TABLE.c.session_id.in_(sorted(sessions))
            )
        ):
            self.written[sessions[session_id]][1][probe] = tuple(row)


@dataclass
class _Forget:
    figures: Figures

    def rolled_back(self) -> None:
        self.figures.written.clear()
        self.figures.seen.clear()


def _figures(old: Row | None, estimate: Estimate, ended: CookEvent | None, method: str) -> Row:
    """The probe's values after this estimate, from those stored before (None: no row)."""
    ready_at = stall_start = stall_end = stall_seconds = None
    if old is not None:
        ready_at, stall_start, stall_end, stall_seconds = old[_READY:]
    if ready_at is None and estimate.state is CookState.READY:
        ready_at = estimate.at
    if stall_start is None and estimate.stall_started is not None:
        stall_start = estimate.stall_started  # the probe's first stall
    if (
        ended is not None
        and stall_end is None
        and stall_start is not None
        and ended.stall_start is not None
        and abs((ended.stall_start - stall_start).total_seconds()) < 1.0
    ):
        stall_end, stall_seconds = ended.at, ended.stall_seconds
    return (
        estimate.unit.value,
        estimate.target,
        estimate.state.value,
        estimate.method.value,
        method,
        None if estimate.value is None else round(estimate.value, 2),
        estimate.progress,
        estimate.done_at,
        estimate.low,
        estimate.high,
        ready_at,
        stall_start,
        stall_end,
        stall_seconds,
    )
