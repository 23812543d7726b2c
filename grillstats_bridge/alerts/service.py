"""Alerts and the database: the service the daemon feeds, and alert management.

:class:`AlertService` holds one :class:`~grillstats_bridge.alerts.engine.AlertEngine`
for every user. The daemon calls ``process(session, readings, now)`` in the
transaction that stores those readings; the service judges them, saves the
arming states that changed and writes each firing to ``alert_history`` (the
history, and the outbox that ``pending`` / ``mark_published`` drain). Per poll
that is at most one upsert and one insert, plus one cheap query every
``alerts.reload_interval`` to notice alerts changed by the CLI.

The functions below the service (``add_alert``, ``set_probe_target``...) are what
the CLI and the Home Assistant ``number`` entities use to manage alerts; they
validate everything and raise :class:`~grillstats_bridge.errors.UsageError` with
a one-line message.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grillstats_bridge.alerts.engine import (
    AlertEngine,
    AlertKind,
    AlertRule,
    AlertRuleError,
    AlertSettings,
    AlertState,
    Arm,
    Firing,
)
from grillstats_bridge.config import AlertsConfig
from grillstats_bridge.domain import FiringEvent, Measurement, Reading, Unit, utcnow
from grillstats_bridge.store.models import (
    AlertHistory,
    AlertStateRow,
    Device,
    ReadingRow,
    TemperatureAlert,
)
from grillstats_bridge.store.sql import rollback_hook, upsert

log = logging.getLogger(__name__)

# Keys in Session.info: the service watching the session, and whether the current
# transaction holds alert work / has committed.
_WATCHED = "grillstats.alerts"


def settings_from_config(config: AlertsConfig) -> AlertSettings:
    """The engine's settings from the ``alerts`` configuration section."""
    return AlertSettings(config)


def rule_from_row(row: TemperatureAlert) -> AlertRule:
    """The engine's rule for a ``temperature_alerts`` row; AlertRuleError if it cannot be one."""
    try:
        channel = int(str(row.probe_id).strip())
    except ValueError:
        raise AlertRuleError(f"alert {row.id}: probe {row.probe_id!r} is not a number") from None
    try:
        unit = Unit.parse(row.temperature_unit or "F")
        kind = AlertKind.parse(row.alert_type)
        return AlertRule(
            id=row.id,
            serial=row.device_id,
            channel=channel,
            kind=kind,
            unit=unit,
            target=row.target_temperature if kind is AlertKind.TARGET else None,
            low=row.min_temperature if kind is AlertKind.RANGE else None,
            high=row.max_temperature if kind is AlertKind.RANGE else None,
            threshold=(
                row.threshold_value if kind in (AlertKind.RISING, AlertKind.FALLING) else None
            ),
            name=row.name,
            user_id=row.user_id,
        )
    except (AlertRuleError, ValueError) as exc:
        raise AlertRuleError(f"alert {row.id}: {exc}") from None


class AlertService:
    """The alert engine bound to the database. Not thread-safe: call it from the pipeline."""

    def __init__(self, config: AlertsConfig | None = None) -> None:
        self.config = config or AlertsConfig()
        self.settings = settings_from_config(self.config)
        self._engine: AlertEngine | None = None  # None: (re)load everything at the next call
        self._signature: tuple[Any, ...] | None = None
        self._checked_at: datetime | None = None
        self._rules_stale = False
        self._reported: set[tuple[int, str]] = set()  # rule problems already logged
        self._methods: dict[int, str] = {}  # alert id -> the cook method declared on it

    # ------------------------------------------------------------------ the daemon's side

    @property
    def engine(self) -> AlertEngine:
        if self._engine is None:
            raise RuntimeError("AlertService.load() or process() has not run yet")
        return self._engine

    def load(self, session: Session, now: datetime | None = None) -> None:
        """Load the active alerts and their saved arming state (``process`` does it when needed)."""
        self._load(session, [], now or utcnow())

    def reload(self) -> None:
        """Load every alert and its state afresh at the next ``process`` (another bridge
        process judged some of these probes meanwhile: account leases moved)."""
        self._engine = None

    def reload_rules(self) -> None:
        """Take changed alerts into account at the next ``process`` (after an in-process edit)."""
        self._rules_stale = True

    def process(self, session: Session, readings: Iterable[Reading], now: datetime) -> list[Firing]:
        """Judge new readings; save state changes and firings in the caller's transaction.

        Call it in the transaction that stores the same readings: if that
        transaction rolls back, the service reloads its state from the database
        at the next call, so a retry with the same readings fires again, once.
        """
        batch = readings if isinstance(readings, (list, tuple)) else list(readings)
        self._watch(session)
        if self._engine is None:
            self._load(session, batch, now)
        elif self._rules_stale or self._check_due(now):
            self._refresh_rules(session, batch, now)
        firings, changes, misapplied = self.engine.step(batch, now)
        self._report_misapplied(misapplied)
        if changes:
            _save_states(session, changes, now)
        if firings:
            firings = self._record(session, firings)
        return firings

    def pending(
        self, session: Session, limit: int = 100, users: Collection[int] | None = None
    ) -> list[Firing]:
        """Firings not yet published, oldest first (with their history ``id``); ``users``:
        only theirs (the accounts this bridge process holds)."""
        query = (
            sa.select(AlertHistory)
            .where(AlertHistory.published_at.is_(None))
            .order_by(AlertHistory.id)
            .limit(limit)
        )
        if users is not None:
            query = query.where(AlertHistory.user_id.in_(sorted(users)))
        # No row lock: the outbox reads, commits, then sends, so a lock would not outlive
        # the read. One bridge drains a database; a repeat is told apart by the id.
        return [_firing_of(row) for row in session.scalars(query)]

    def mark_published(
        self, session: Session, ids: Iterable[int], at: datetime | None = None
    ) -> int:
        """Record that the broker acknowledged these firings; returns how many were marked."""
        wanted = sorted(set(ids))
        if not wanted:
            return 0
        result = session.execute(
            sa.update(AlertHistory)
            .where(AlertHistory.id.in_(wanted), AlertHistory.published_at.is_(None))
            .values(published_at=at or utcnow())
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def targets(self) -> dict[tuple[str, int], Measurement]:
        """Each probe's target (its first active target alert), for the ``number`` entities."""
        return {
            probe: Measurement(rule.target, rule.unit)
            for probe, rule in self._first_rules(AlertKind.TARGET).items()
            if rule.target is not None
        }

    def methods(self) -> dict[tuple[str, int], str]:
        """Each probe's declared cook method (on its first active target alert; auto left out)."""
        return {
            probe: self._methods[rule.id]
            for probe, rule in self._first_rules(AlertKind.TARGET).items()
            if rule.id in self._methods
        }

    def ranges(self) -> dict[tuple[str, int], tuple[Measurement, Measurement]]:
        """Each probe's range (its first active range alert), for the range ``number`` entities."""
        return {
            probe: (Measurement(rule.low, rule.unit), Measurement(rule.high, rule.unit))
            for probe, rule in self._first_rules(AlertKind.RANGE).items()
            if rule.low is not None and rule.high is not None
        }

    def _first_rules(self, kind: AlertKind) -> dict[tuple[str, int], AlertRule]:
        """Each probe's first (lowest id) active rule of ``kind``."""
        out: dict[tuple[str, int], AlertRule] = {}
        for rule in sorted(self.engine.rules, key=lambda r: r.id):
            if rule.kind is kind:
                out.setdefault(rule.probe, rule)
        return out

    def active_probes(self) -> set[tuple[str, int]]:
        """Probes with an alert fired and not re-armed (the "alert active" binary sensors)."""
        return self.engine.active_probes()

    # ------------------------------------------------------------------ loading

    def _load(self, session: Session, batch: Sequence[Reading], now: datetime) -> None:
        _delete_orphan_states(session)
        rules = self._read_rules(session)
        states = [_state_of(row) for row in session.scalars(sa.select(AlertStateRow))]
        engine = AlertEngine(rules, self.settings, states)
        _prime(session, engine, {rule.probe for rule in rules}, batch)
        self._engine = engine
        self._signature = _signature(session)
        self._checked_at = now
        self._rules_stale = False
        log.info("alerts: %d active alert(s) loaded", len(rules))

    def _check_due(self, now: datetime) -> bool:
        last = self._checked_at
        interval = timedelta(seconds=self.config.reload_interval)
        return last is None or now - last >= interval or now < last

    def _refresh_rules(self, session: Session, batch: Sequence[Reading], now: datetime) -> None:
        self._checked_at = now
        signature = _signature(session)
        if signature == self._signature and not self._rules_stale:
            return
        engine = self.engine
        known = {rule.probe for rule in engine.rules}
        old_ids = {rule.id for rule in engine.rules}
        rules = self._read_rules(session)
        new_ids = [rule.id for rule in rules if rule.id not in old_ids]
        states = (
            [
                _state_of(row)
                for row in session.scalars(
                    sa.select(AlertStateRow).where(AlertStateRow.alert_id.in_(new_ids))
                )
            ]
            if new_ids
            else []
        )
        engine.set_rules(rules, states)
        _delete_orphan_states(session)
        _prime(session, engine, {rule.probe for rule in rules} - known, batch)
        self._signature = signature
        self._rules_stale = False
        log.info("alerts: rules changed, %d active alert(s)", len(rules))

    def _read_rules(self, session: Session) -> list[AlertRule]:
        rows = session.scalars(
            sa.select(TemperatureAlert)
            .join(Device, _OWNED)
            .where(_ACTIVE)
            .order_by(TemperatureAlert.id)
        )
        rules = []
        self._methods = {}
        for row in rows:
            if row.cook_method is not None:
                self._methods[row.id] = row.cook_method
            try:
                rules.append(rule_from_row(row))
            except AlertRuleError as exc:
                self._report(row.id, f"alerts: skipped: {exc}")
        return rules

    def _report(self, alert_id: int, message: str) -> None:
        if (alert_id, message) not in self._reported:
            self._reported.add((alert_id, message))
            log.warning("%s", message)

    def _report_misapplied(self, alert_ids: Iterable[int]) -> None:
        for alert_id in alert_ids:
            self._report(
                alert_id,
                f"alerts: alert {alert_id} is on a humidity channel and is never evaluated; "
                "remove it ('grillstats-bridge alert remove')",
            )

    # ------------------------------------------------------------------ storing

    def _record(self, session: Session, firings: list[Firing]) -> list[Firing]:
        rows = [
            {
                "alert_id": f.alert_id,
                "user_id": f.user_id,
                "device_id": f.serial,
                "probe": f.channel,
                "alert_type": f.kind.value,
                "event_type": f.event.value,
                "alert_name": f.name,
                "value": f.value,
                "unit": f.unit.value,
                "threshold": f.threshold,
                "change": f.change,
                "fired_at": f.time,
                "created_at": utcnow(),
            }
            for f in firings
        ]
        # One batched INSERT; the ids come back in the order of the firings.
        ids = session.scalars(
            sa.insert(AlertHistory).returning(AlertHistory.id, sort_by_parameter_order=True),
            rows,
        ).all()
        latest: dict[int, datetime] = {}
        for f in firings:
            latest[f.alert_id] = f.time
        table = cast(sa.Table, TemperatureAlert.__table__)
        # A firing is not an edit: updated_at keeps its value (it also tells the
        # daemon that alerts were changed from the CLI).
        session.execute(
            sa.update(table)
            .where(table.c.id == sa.bindparam("alert"))
            .values(
                last_triggered=sa.bindparam("at", type_=table.c.last_triggered.type),
                updated_at=table.c.updated_at,
            ),
            [{"alert": alert_id, "at": at} for alert_id, at in latest.items()],
        )
        return [replace(f, id=row_id) for f, row_id in zip(firings, ids, strict=True)]

    def _watch(self, session: Session) -> None:
        """Reload from the database if the transaction holding our work does not commit."""
        rollback_hook(session, (_WATCHED, id(self)), lambda: _Reload(self))


@dataclass
class _Reload:
    service: AlertService

    def rolled_back(self) -> None:
        log.info("alerts: the transaction did not commit, reloading the alert state")
        self.service._engine = None


def _delete_orphan_states(session: Session) -> None:
    """States of alerts removed while the daemon still held them (and saved their state)."""
    session.execute(
        sa.delete(AlertStateRow).where(
            AlertStateRow.alert_id.not_in(sa.select(TemperatureAlert.id))
        )
    )


# The alerts judged: active, on a device their user owns, while it is active. A device
# row belongs to one user: the alerts of its previous owner (a device transferred) are
# not judged on the new owner's readings, and neither are the alerts of a user whose
# account was unlinked (unlinking deactivates the devices). Join Device ON this.
_OWNED = sa.and_(
    Device.device_id == TemperatureAlert.device_id,
    Device.user_id == TemperatureAlert.user_id,
    Device.is_active.is_not(False),
)
_ACTIVE = TemperatureAlert.is_active.is_not(False)


def _signature(session: Session) -> tuple[Any, ...]:
    """Changes whenever an alert is added, removed or edited (from any process), and
    whenever the alerts judged change because a device changed owner or was deactivated."""
    row = session.execute(
        sa.select(
            sa.func.count(TemperatureAlert.id),
            sa.func.max(TemperatureAlert.id),
            sa.func.max(TemperatureAlert.updated_at),
        )
    ).one()
    judged = session.execute(
        sa.select(sa.func.count(TemperatureAlert.id), sa.func.sum(TemperatureAlert.id))
        .join(Device, _OWNED)
        .where(_ACTIVE)
    ).one()
    return (*row, *judged)


def _prime(
    session: Session,
    engine: AlertEngine,
    probes: set[tuple[str, int]],
    batch: Sequence[Reading],
) -> None:
    """Give the engine the stored readings it needs: each probe's last time, rate windows.

    A probe's readings from the batch being processed are left out: in the
    daemon's transaction they are already stored, and they still have to be judged.
    """
    if not probes:
        return
    cut: dict[tuple[str, int], datetime] = {}
    for reading in batch:
        key = (reading.serial, reading.channel)
        if key in probes and (key not in cut or reading.time < cut[key]):
            cut[key] = reading.time
    serials = sorted({serial for serial, _ in probes})
    latest: dict[tuple[str, int], datetime] = {}
    for serial, channel, stored in session.execute(
        sa.select(ReadingRow.device_id, ReadingRow.probe, sa.func.max(ReadingRow.time))
        .where(ReadingRow.device_id.in_(serials))
        .group_by(ReadingRow.device_id, ReadingRow.probe)
    ):
        key = (serial, channel)
        at: datetime | None = stored
        if key not in probes or at is None:
            continue
        if key in cut and at >= cut[key]:
            at = session.scalar(  # one query per probe of the batch, at load time only
                sa.select(sa.func.max(ReadingRow.time)).where(
                    ReadingRow.device_id == serial,
                    ReadingRow.probe == channel,
                    ReadingRow.time < cut[key],
                )
            )
        if at is not None:
            latest[key] = at
    primed: list[Reading] = []
    rate_probes = {p for p in engine.rate_probes() if p in latest}
    if rate_probes:
        since = min(latest[p] for p in rate_probes) - engine.window_lookback()
        rows = session.scalars(
            sa.select(ReadingRow)
            .where(
                ReadingRow.device_id.in_(sorted({s for s, _ in rate_probes})),
                ReadingRow.time >= since,
            )
            .order_by(ReadingRow.time, ReadingRow.id)
        )
        for row in rows:
            key = (row.device_id, row.probe)
            if key in rate_probes and row.time <= latest[key]:
                primed.append(_reading_of(row))
    # The other probes only need their last time (gaps, replays): a value-less reading.
    primed += [
        Reading(serial=serial, channel=channel, time=at, value=None, unit=Unit.FAHRENHEIT)
        for (serial, channel), at in latest.items()
        if (serial, channel) not in rate_probes
    ]
    engine.prime(primed)


def _reading_of(row: ReadingRow) -> Reading:
    return Reading(
        serial=row.device_id,
        channel=row.probe,
        time=row.time,
        value=row.value,
        unit=Unit.parse(row.unit),
    )


def _state_of(row: AlertStateRow) -> AlertState:
    return AlertState(
        alert_id=row.alert_id,
        rule_key=row.rule_key,
        arm=Arm(row.arm),
        low_arm=Arm(row.low_arm) if row.low_arm else None,
        last_fired=row.last_fired,
        changed_at=row.changed_at,
        window_reset_at=row.window_reset_at,
    )


def _save_states(session: Session, states: Sequence[AlertState], now: datetime) -> None:
    """Insert or update the changed states in one statement."""
    columns = ("rule_key", "arm", "low_arm", "last_fired", "changed_at", "window_reset_at")
    upsert(
        session,
        cast(sa.Table, AlertStateRow.__table__),
        [
            {
                "alert_id": s.alert_id,
                "rule_key": s.rule_key,
                "arm": s.arm.value,
                "low_arm": s.low_arm.value if s.low_arm else None,
                "last_fired": s.last_fired,
                "changed_at": s.changed_at,
                "window_reset_at": s.window_reset_at,
                "updated_at": now,
            }
            for s in states
        ],
        keys=["alert_id"],
        update=(*columns, "updated_at"),
    )


def _firing_of(row: AlertHistory) -> Firing:
    return Firing(
        id=row.id,
        alert_id=row.alert_id,
        kind=AlertKind(row.alert_type),
        event=FiringEvent(row.event_type),
        serial=row.device_id,
        channel=row.probe,
        time=row.fired_at,
        value=row.value,
        unit=Unit(row.unit),
        threshold=row.threshold,
        change=row.change,
        name=row.alert_name,
        user_id=row.user_id,
    )
