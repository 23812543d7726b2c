"""Each session's cook figures in the database: what ``session show`` and the export print.

After every batch the estimate of each probe with a target goes on its device's active
session (``session_cook_probes``): the done-at estimate and its band, the state, the
progress, the probe's first stall (start, then end and length) and when it first reached
its target. A session that ended keeps the figures of its last poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grillstats_bridge.cook.model import CookEvent, CookEventKind, CookState, Estimate
from grillstats_bridge.sessions.model import SessionStatus
from grillstats_bridge.store.models import GrillingSession, SessionCookProbe


def save(
    db: Session, estimates: Sequence[Estimate], events: Sequence[CookEvent], now: datetime
) -> int:
    """Write the estimates on their devices' active sessions; how many probes were written."""
    if not estimates:
        return 0
    serials = sorted({e.serial for e in estimates})
    sessions: dict[str, int] = {
        serial: session_id
        for serial, session_id in db.execute(
            sa.select(GrillingSession.device_id, GrillingSession.id).where(
                GrillingSession.device_id.in_(serials),
                GrillingSession.status == SessionStatus.ACTIVE,
            )
        )
    }
    if not sessions:
        return 0
    existing = {
        (row.session_id, row.probe): row
        for row in db.scalars(
            sa.select(SessionCookProbe).where(
                SessionCookProbe.session_id.in_(sorted(sessions.values()))
            )
        )
    }
    ended = {(e.serial, e.channel): e for e in events if e.kind is CookEventKind.STALL_ENDED}
    written = 0
    for estimate in estimates:
        session_id = sessions.get(estimate.serial)
        if session_id is None:
            continue
        row = existing.get((session_id, estimate.channel))
        if row is None:
            row = SessionCookProbe(session_id=session_id, probe=estimate.channel)
            db.add(row)
            existing[(session_id, estimate.channel)] = row
        _apply(row, estimate, ended.get(estimate.key), now)
        written += 1
    return written


def _apply(
    row: SessionCookProbe, estimate: Estimate, ended: CookEvent | None, now: datetime
) -> None:
    row.unit = estimate.unit.value
    row.target = estimate.target
    row.state = estimate.state.value
    row.method = estimate.method.value
    row.value = None if estimate.value is None else round(estimate.value, 2)
    row.progress = estimate.progress
    row.done_at, row.done_low, row.done_high = estimate.done_at, estimate.low, estimate.high
    row.updated_at = now
    if row.ready_at is None and estimate.state is CookState.READY:
        row.ready_at = estimate.at
    if row.stall_start is None and estimate.stall_started is not None:
        row.stall_start = estimate.stall_started  # the probe's first stall
    if (
        ended is not None
        and row.stall_end is None
        and row.stall_start is not None
        and ended.stall_start is not None
        and abs((ended.stall_start - row.stall_start).total_seconds()) < 1.0
    ):
        row.stall_end, row.stall_seconds = ended.at, ended.stall_seconds
