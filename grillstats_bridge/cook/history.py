"""A person's past cooks in the database: what each session's cook left, and the
calibration the predictor takes from them (``cook.calibration``).

When a probe reaches its target the ready event's lesson (the target, its pace, its
climb after the stall) goes on the device's active session (``cook_*`` columns,
migration ``0012_cook_learning``; the first probe to get there). :class:`Calibrations`
reads the completed sessions of a device's owner once (one query per user) and keeps
each probe's calibration until a session of that user ends or the probe's target
changes: not every poll.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grillstats_bridge.cook.calibration import PastCook, calibrate
from grillstats_bridge.cook.model import NO_CALIBRATION, Calibration, CookEvent, ProbeKey, Rules
from grillstats_bridge.domain import Measurement, Unit
from grillstats_bridge.sessions.model import SessionStatus
from grillstats_bridge.store.models import Device as DeviceRow
from grillstats_bridge.store.models import GrillingSession, TemperatureAlert

PAST_LIMIT = 50  # the latest completed cooks of a user read, at most
_SESSIONS: sa.Table = GrillingSession.__table__  # type: ignore[assignment]


def record_ready(db: Session, event: CookEvent) -> None:
    """A ready event's lesson on the device's active session (its first ready probe)."""
    if event.target is None:
        return
    db.execute(
        sa.update(_SESSIONS)
        .where(
            _SESSIONS.c.device_id == event.serial,
            _SESSIONS.c.status == SessionStatus.ACTIVE,
            _SESSIONS.c.cook_done_at.is_(None),
        )
        .values(
            cook_probe=event.channel,
            cook_target=event.target,
            cook_unit=event.unit.value,
            cook_done_at=event.at,
            cook_pace=event.pace,
            cook_climb_pace=event.climb_pace,
            cook_sear_at=event.sear_at,
            cook_sear_seconds=event.sear_seconds,
        )
    )


def past_cooks(
    db: Session, user_id: int, unit: Unit, *, before: datetime | None = None
) -> list[PastCook]:
    """The user's completed sessions whose probe reached its target, latest first
    (temperatures in ``unit``); only those ended before ``before`` if given."""
    query = (
        sa.select(
            _SESSIONS.c.device_id,
            _SESSIONS.c.cook_target,
            _SESSIONS.c.cook_unit,
            _SESSIONS.c.end_time,
            _SESSIONS.c.stall_seconds,
            _SESSIONS.c.stall_end,
            _SESSIONS.c.cook_pace,
            _SESSIONS.c.cook_climb_pace,
            _SESSIONS.c.cook_sear_at,
            _SESSIONS.c.cook_sear_seconds,
        )
        .where(
            _SESSIONS.c.user_id == user_id,
            _SESSIONS.c.status == SessionStatus.COMPLETED,
            _SESSIONS.c.cook_target.is_not(None),
            _SESSIONS.c.end_time.is_not(None),
        )
        .order_by(_SESSIONS.c.end_time.desc())
        .limit(PAST_LIMIT)
    )
    if before is not None:
        query = query.where(_SESSIONS.c.end_time < before)
    out = []
    for row in db.execute(query):
        if row.cook_unit not in (Unit.FAHRENHEIT.value, Unit.CELSIUS.value):
            continue  # not a temperature: nothing to learn from
        row_unit = Unit(row.cook_unit)
        target = Measurement(row.cook_target, row_unit).to(unit).value
        sear_at = None
        if row.cook_sear_at is not None:
            sear_at = Measurement(row.cook_sear_at, row_unit).to(unit).value
        out.append(
            PastCook(
                serial=row.device_id,
                target=target,
                ended=row.end_time.timestamp(),
                stall_seconds=row.stall_seconds if row.stall_end is not None else None,
                climb_pace=row.cook_climb_pace,
                pace=row.cook_pace,
                sear_at=sear_at,
                sear_seconds=row.cook_sear_seconds,
            )
        )
    return out


def owners(db: Session, serials: Iterable[str]) -> dict[str, int]:
    """Each device's owner (serial -> user id), for the devices registered."""
    wanted = sorted(set(serials))
    if not wanted:
        return {}
    rows = db.execute(
        sa.select(DeviceRow.device_id, DeviceRow.user_id).where(DeviceRow.device_id.in_(wanted))
    )
    return {serial: user for serial, user in rows}


def active_session_ids(db: Session, serials: Iterable[str]) -> dict[str, int]:
    """Each device's active session (serial -> session id), for those that have one."""
    wanted = sorted(set(serials))
    if not wanted:
        return {}
    rows = db.execute(
        sa.select(GrillingSession.device_id, GrillingSession.id).where(
            GrillingSession.device_id.in_(wanted),
            GrillingSession.status == SessionStatus.ACTIVE,
        )
    )
    return {serial: session_id for serial, session_id in rows}


class Calibrations:
    """Each probe's calibration from its owner's past cooks, read once and kept."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._owners: dict[str, int | None] = {}
        self._past: dict[int, list[PastCook]] = {}
        self._probes: dict[ProbeKey, tuple[float, Calibration]] = {}  # key -> (target, it)

    def forget(self, serials: Iterable[str]) -> None:
        """A session of these devices ended: their owners' cooks are read again."""
        users = {self._owners.get(s) for s in serials} - {None}
        for user in users:
            self._past.pop(user, None)  # type: ignore[arg-type]
        stale = {s for s, u in self._owners.items() if u in users} | set(serials)
        self._probes = {k: v for k, v in self._probes.items() if k[0] not in stale}

    def get(
        self, db: Session, targets: Mapping[ProbeKey, Measurement], now: datetime
    ) -> dict[ProbeKey, Calibration]:
        """The calibration of every probe with a target (read from the store if new)."""
        wanted = {
            key: target.to(self.rules.unit).value
            for key, target in targets.items()
            if target.unit.is_temperature
        }
        fresh = [k for k, t in wanted.items() if k not in self._probes or self._probes[k][0] != t]
        unknown = {serial for serial, _ in fresh if serial not in self._owners}
        if unknown:
            found = owners(db, unknown)
            self._owners.update({s: found.get(s) for s in unknown})
        for key in fresh:
            user = self._owners.get(key[0])
            calibration = NO_CALIBRATION
            if user is not None:
                if user not in self._past:
                    self._past[user] = past_cooks(db, user, self.rules.unit)
                calibration = calibrate(
                    self._past[user],
                    serial=key[0],
                    target=wanted[key],
                    now=now.timestamp(),
                    rules=self.rules,
                )
            self._probes[key] = (wanted[key], calibration)
        return {key: self._probes[key][1] for key in wanted}


def session_calibration(
    db: Session, session: GrillingSession, rules: Rules
) -> tuple[Measurement, Calibration] | None:
    """The calibration an estimate of this session's cook takes (``session show``): from
    the owner's cooks that ended before it began, for its target (the one it reached, else
    the device's first active target alert); None without a target."""
    target = None
    if session.cook_target is not None and session.cook_unit in ("F", "C"):
        target = Measurement(session.cook_target, Unit(session.cook_unit))
    else:
        alert = db.execute(
            sa.select(TemperatureAlert.target_temperature, TemperatureAlert.temperature_unit)
            .where(
                TemperatureAlert.user_id == session.user_id,
                TemperatureAlert.device_id == session.device_id,
                TemperatureAlert.alert_type == "target",
                TemperatureAlert.is_active.is_not(False),
                TemperatureAlert.target_temperature.is_not(None),
            )
            .order_by(TemperatureAlert.id)
            .limit(1)
        ).one_or_none()
        if alert is not None and alert.temperature_unit in ("F", "C"):
            target = Measurement(alert.target_temperature, Unit(alert.temperature_unit))
    if target is None:
        return None
    cooks = past_cooks(db, session.user_id, rules.unit, before=session.start_time)
    value = target.to(rules.unit).value
    start = session.start_time.timestamp()
    calibration = calibrate(cooks, serial=session.device_id, target=value, now=start, rules=rules)
    return target, calibration
