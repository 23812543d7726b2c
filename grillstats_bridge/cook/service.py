"""Cook predictions over the database: the tracker fed by every batch, stalls on sessions.

The daemon's pipeline calls :meth:`CookService.process` once per transaction with the
batch's readings, the devices it polled and every probe's target (the alert service's
``targets()``): the tracker takes them in one step and the stall events it returns are
written on the device's active session (its first stall: start, end and length). The
first call rebuilds the tracker from stored readings: for a device cooking, from the
start of its session (at most ``RESTORE_MAX`` back), else the last ``Rules.history``;
a stall found there that the session does not know yet is written on it. If the
transaction rolls back, the tracker's probes of the batch's devices are put back.
The batch's events are also kept in ``cook_events`` for the outbox (``cook.events``),
and every estimate goes on its device's active session (``cook.figures``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grillstats_bridge.alerts.rules import probe_methods
from grillstats_bridge.config import CookConfig
from grillstats_bridge.cook import events, figures
from grillstats_bridge.cook.calibration import declared
from grillstats_bridge.cook.history import Calibrations, record_ready
from grillstats_bridge.cook.model import (
    Calibration,
    CookBatch,
    CookEvent,
    CookEventKind,
    CookMethod,
    CookStep,
    Estimate,
    ProbeKey,
    Rules,
)
from grillstats_bridge.cook.pits import GATEWAY_FIELD, gateway_of, is_rfx_meat, pit_key
from grillstats_bridge.cook.tracker import CookTracker, device_pit, pit_channel
from grillstats_bridge.domain import Device, Measurement, Reading, Unit
from grillstats_bridge.sessions.model import SessionStatus
from grillstats_bridge.store.models import Device as DeviceRow
from grillstats_bridge.store.models import GrillingSession, ProbeRow
from grillstats_bridge.store.readings import channel_readings
from grillstats_bridge.store.sql import rollback_hook

log = logging.getLogger(__name__)

RESTORE_MAX = timedelta(hours=24)  # readings replayed after a restart, at most
REPLAY_STEP = 60.0  # seconds of stored readings the tracker takes per step when rebuilding
_UNDO = "grillstats.cook.undo"
_SESSIONS: sa.Table = GrillingSession.__table__  # type: ignore[assignment]


class CookService:
    """The cook tracker bound to the database."""

    def __init__(self, config: CookConfig) -> None:
        self.rules = Rules.from_config(config)
        self.tracker = CookTracker(self.rules)
        self.loaded = False
        self.pits: dict[str, int | ProbeKey] = {}  # serial -> pit channel, or a gateway's probe
        self.last: dict[ProbeKey, Estimate] = {}  # the latest estimate of every probe
        self.calibrations = Calibrations(self.rules)  # from the owners' past cooks
        self.figures = figures.Figures()  # what is on the sessions

    def process(
        self,
        db: Session,
        readings: Sequence[Reading],
        devices: Iterable[Device],
        targets: Mapping[ProbeKey, Measurement],
        now: datetime,
        ended: Iterable[str] = (),
    ) -> CookStep:
        """One batch through the tracker; stall events written on the sessions.

        ``ended``: the devices whose session ended in this batch (their owners' past
        cooks are read again)."""
        devices = list(devices)
        self.calibrations.forget(ended)
        if not self.loaded:
            self.load(db, targets, now)
        relayed = []  # RFX Meat probes with a target: their gateway's pit (in the database)
        for device in devices:
            pit = device_pit(device, targets)
            if pit is not None:
                self.pits[device.serial] = pit
            elif is_rfx_meat(device.model, device.type) and any(
                s == device.serial for s, _ in targets
            ):
                relayed.append(device.serial)
            else:
                self.pits.pop(device.serial, None)
        if relayed:
            found = _gateway_pits(db, relayed, targets)
            for serial in relayed:
                if serial in found:
                    self.pits[serial] = found[serial]
                else:
                    self.pits.pop(serial, None)
        serials = {r.serial for r in readings} | {d.serial for d in devices}
        undo = rollback_hook(db, (_UNDO, id(self)), lambda: _Undo(self))
        undo.save(serials)
        methods = probe_methods(db)  # read every pass: HA or the CLI may have changed them
        calibrations = self._calibrations(db, targets, now, methods)
        step = self.tracker.step(
            CookBatch(
                now=now,
                readings=readings,
                targets=targets,
                pits=dict(self.pits),
                calibrations=calibrations,
            )
        )
        self._store(db, step.events)
        events.record(db, step.events)  # the outbox sends them once this commits
        self.figures.save(db, step.estimates, step.events, now, methods)
        self._remember(step)
        return step

    def _calibrations(
        self,
        db: Session,
        targets: Mapping[ProbeKey, Measurement],
        now: datetime,
        methods: Mapping[ProbeKey, str],
    ) -> dict[ProbeKey, Calibration]:
        """Each probe's calibration from past cooks, with the cook method declared for it."""
        out = self.calibrations.get(db, targets, now)
        for key, method in methods.items():
            if key in out:
                target = targets[key].to(self.rules.unit).value
                out[key] = declared(out[key], CookMethod(method), target=target, rules=self.rules)
        return out

    def load(self, db: Session, targets: Mapping[ProbeKey, Measurement], now: datetime) -> None:
        """Rebuild the tracker from the stored readings of the probes with a target."""
        self.tracker = CookTracker(self.rules)
        self.loaded = True
        serials = sorted({serial for serial, _ in targets})
        if not serials:
            return
        self.pits = _stored_pits(db, serials, targets)
        since = {s: now - timedelta(seconds=self.rules.history) for s in serials}
        for serial, started in _active_sessions(db, serials).items():
            since[serial] = min(since[serial], max(started, now - RESTORE_MAX))
        wanted: dict[str, tuple[set[int], datetime]] = {}  # serial -> channels, since
        for serial in serials:
            probes = [(s, c) for s, c in targets if s == serial]
            pit = pit_key(serial, self.pits.get(serial))
            for key in [*probes, pit] if pit is not None else probes:
                channels, start = wanted.get(key[0], (set(), since[serial]))
                wanted[key[0]] = (channels | {key[1]}, min(start, since[serial]))
        readings: list[Reading] = []
        for serial, (channels, start) in sorted(wanted.items()):
            readings += channel_readings(db, serial, channels, start, now)
        step = CookStep()
        methods = probe_methods(db)
        calibrations = self._calibrations(db, targets, now, methods)
        for when, part in _buckets(readings):  # in time, so stalls are dated as they happened
            step = self.tracker.step(
                CookBatch(
                    now=when,
                    readings=part,
                    targets=targets,
                    pits=self.pits,
                    calibrations=calibrations,
                    replay=True,
                )
            )
        self._remember(step)
        self._catch_up(db, step, now)
        self.figures.save(db, step.estimates, (), now, methods)
        log.info(
            "cook: %d probe(s) rebuilt from %d stored readings", len(step.estimates), len(readings)
        )

    # ------------------------------------------------------------------ sessions

    def _store(self, db: Session, events: Sequence[CookEvent]) -> None:
        """A device's first stall on its active session: start, then end and length; its
        first ready probe's lesson for the next cooks."""
        for event in events:
            if event.kind is CookEventKind.READY:
                record_ready(db, event)
            active = (_SESSIONS.c.device_id == event.serial) & (
                _SESSIONS.c.status == SessionStatus.ACTIVE
            )
            if event.kind is CookEventKind.STALL_STARTED:
                db.execute(
                    sa.update(_SESSIONS)
                    .where(active, _SESSIONS.c.stall_start.is_(None))
                    .values(stall_start=event.stall_start)
                )
            elif event.kind is CookEventKind.STALL_ENDED and event.stall_start is not None:
                db.execute(
                    sa.update(_SESSIONS)
                    .where(
                        active,
                        _SESSIONS.c.stall_start == event.stall_start,
                        _SESSIONS.c.stall_end.is_(None),
                    )
                    .values(stall_end=event.at, stall_seconds=event.stall_seconds)
                )

    def _catch_up(self, db: Session, step: CookStep, now: datetime) -> None:
        """A stall that started while the bridge was down goes on the session too."""
        events = [
            CookEvent(
                kind=CookEventKind.STALL_STARTED,
                serial=e.serial,
                channel=e.channel,
                at=now,
                value=e.value or 0.0,
                unit=e.unit,
                stall_start=e.stall_started,
            )
            for e in step.estimates
            if e.stall_started is not None
        ]
        self._store(db, events)

    def _remember(self, step: CookStep) -> None:
        for estimate in step.estimates:
            self.last[estimate.key] = estimate
        for key in step.dropped:
            self.last.pop(key, None)


@dataclass
class _Undo:
    """How to put the tracker back if the transaction rolls back."""

    service: CookService
    saved: dict[str, Any] = field(default_factory=dict)

    def save(self, serials: Iterable[str]) -> None:
        fresh = {s for s in serials if s not in self.saved}
        if not fresh:
            return
        self.saved.update({s: {} for s in fresh})
        # One pass over the tracker's probes for all of them (not one per device)
        for key, probe in self.service.tracker.checkpoint(fresh).items():
            self.saved[key[0]][key] = probe

    def rolled_back(self) -> None:
        for serial, probes in self.saved.items():
            self.service.tracker.restore(probes, [serial])
        log.debug("cook: transaction rolled back; %d device(s) put back", len(self.saved))


def _stored_pits(
    db: Session, serials: Sequence[str], targets: Mapping[ProbeKey, Measurement]
) -> dict[str, int | ProbeKey]:
    labels = _labels(db, serials)
    out: dict[str, int | ProbeKey] = {}
    for serial in serials:
        pit = pit_channel(serial, labels.get(serial, {}), targets)
        if pit is not None:
            out[serial] = pit
    relayed = [s for s in serials if s not in out]
    if relayed:
        out.update(_gateway_pits(db, relayed, targets))
    return out


def _labels(db: Session, serials: Iterable[str]) -> dict[str, dict[int, str | None]]:
    """The stored temperature probes' labels of these devices (serial -> channel -> label)."""
    rows = db.execute(
        sa.select(DeviceRow.device_id, ProbeRow.channel, ProbeRow.label)
        .join(ProbeRow, ProbeRow.device_id == DeviceRow.id)
        .where(DeviceRow.device_id.in_(sorted(set(serials))), ProbeRow.unit != Unit.HUMIDITY.value)
    )
    labels: dict[str, dict[int, str | None]] = {}
    for serial, channel, label in rows:
        labels.setdefault(serial, {})[channel] = label
    return labels


def _gateway_pits(
    db: Session, serials: Sequence[str], targets: Mapping[ProbeKey, Measurement]
) -> dict[str, ProbeKey]:
    """The RFX Meat probes among ``serials`` -> their gateway's pit probe (``cook.pits``),
    looked for among the same user's devices only."""
    meats: list[tuple[str, int, str | None]] = []  # serial, owner, the gateway it names
    for serial, user_id, model, kind, raw in db.execute(
        sa.select(
            DeviceRow.device_id,
            DeviceRow.user_id,
            DeviceRow.model,
            DeviceRow.device_type,
            DeviceRow.raw,
        ).where(DeviceRow.device_id.in_(sorted(serials)))
    ):
        if is_rfx_meat(model, kind):
            named = raw.get(GATEWAY_FIELD) if isinstance(raw, dict) else None
            meats.append((serial, user_id, named if isinstance(named, str) else None))
    if not meats:
        return {}
    siblings: dict[int, dict[str, str | None]] = {}
    for serial, user_id, model in db.execute(
        sa.select(DeviceRow.device_id, DeviceRow.user_id, DeviceRow.model).where(
            DeviceRow.user_id.in_(sorted({user for _, user, _ in meats}))
        )
    ):
        siblings.setdefault(user_id, {})[serial] = model
    gateways = {
        serial: gateway_of(named, {s: m for s, m in siblings[user].items() if s != serial})
        for serial, user, named in meats
    }
    labels = _labels(db, [g for g in gateways.values() if g is not None])
    out: dict[str, ProbeKey] = {}
    for serial, gateway in gateways.items():
        pit = None if gateway is None else pit_channel(gateway, labels.get(gateway, {}), targets)
        if gateway is not None and pit is not None:
            out[serial] = (gateway, pit)
    return out


def _active_sessions(db: Session, serials: Sequence[str]) -> dict[str, datetime]:
    rows = db.execute(
        sa.select(_SESSIONS.c.device_id, _SESSIONS.c.start_time).where(
            _SESSIONS.c.device_id.in_(serials), _SESSIONS.c.status == SessionStatus.ACTIVE
        )
    )
    return {serial: start for serial, start in rows}


def _buckets(readings: Sequence[Reading]) -> list[tuple[datetime, list[Reading]]]:
    """Readings in steps of ``REPLAY_STEP`` seconds, each dated by its last reading."""
    out: list[tuple[datetime, list[Reading]]] = []
    for reading in sorted(readings, key=lambda r: r.time):
        if out and (reading.time - out[-1][1][0].time).total_seconds() < REPLAY_STEP:
            out[-1][1].append(reading)
            out[-1] = (reading.time, out[-1][1])
        else:
            out.append((reading.time, [reading]))
    return out
