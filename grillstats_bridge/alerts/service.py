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
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, SessionTransaction, selectinload

from grillstats_bridge.alerts.engine import (
    MAX_CHANNEL,
    AlertEngine,
    AlertKind,
    AlertRule,
    AlertRuleError,
    AlertSettings,
    AlertState,
    Arm,
    Firing,
    FiringEvent,
    check_rule_values,
)
from grillstats_bridge.config import AlertsConfig
from grillstats_bridge.domain import Measurement, Reading, Unit, utcnow
from grillstats_bridge.errors import UsageError
from grillstats_bridge.store.models import (
    AlertHistory,
    AlertStateRow,
    Device,
    ReadingRow,
    TemperatureAlert,
    User,
)
from grillstats_bridge.store.users import get_user

log = logging.getLogger(__name__)

# Keys in Session.info: the service watching the session, and whether the current
# transaction holds alert work / has committed.
_WATCHED = "grillstats.alerts.watched"
_PENDING = "grillstats.alerts.pending"
_COMMITTED = "grillstats.alerts.committed"


def settings_from_config(config: AlertsConfig) -> AlertSettings:
    """The engine's settings from the ``alerts`` configuration section."""
    return AlertSettings(
        hysteresis_f=config.hysteresis_f,
        hysteresis_c=config.hysteresis_c,
        rate_window=timedelta(seconds=config.rate_window),
        rate_coverage=config.rate_coverage,
        cooldown=timedelta(seconds=config.cooldown),
        max_gap=timedelta(seconds=config.max_gap) if config.max_gap > 0 else None,
        max_age=timedelta(seconds=config.max_age) if config.max_age > 0 else None,
    )


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

    # ------------------------------------------------------------------ the daemon's side

    @property
    def engine(self) -> AlertEngine:
        if self._engine is None:
            raise RuntimeError("AlertService.load() or process() has not run yet")
        return self._engine

    def load(self, session: Session, now: datetime | None = None) -> None:
        """Load the active alerts and their saved arming state (``process`` does it when needed)."""
        self._load(session, [], now or utcnow())

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
        engine = self.engine
        firings = engine.process(batch, now)
        self._report_misapplied(engine)
        changes = engine.take_changes()
        if changes:
            _save_states(session, changes, now)
        if firings:
            firings = self._record(session, firings)
        return firings

    def pending(self, session: Session, limit: int = 100) -> list[Firing]:
        """Firings not yet published, oldest first (with their history ``id``)."""
        query = (
            sa.select(AlertHistory)
            .where(AlertHistory.published_at.is_(None))
            .order_by(AlertHistory.id)
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            # Two publishers on one database never take the same rows.
            query = query.with_for_update(skip_locked=True)
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
            .where(TemperatureAlert.is_active.is_not(False))
            .order_by(TemperatureAlert.id)
        )
        rules = []
        for row in rows:
            try:
                rules.append(rule_from_row(row))
            except AlertRuleError as exc:
                self._report(row.id, f"alerts: skipped: {exc}")
        return rules

    def _report(self, alert_id: int, message: str) -> None:
        if (alert_id, message) not in self._reported:
            self._reported.add((alert_id, message))
            log.warning("%s", message)

    def _report_misapplied(self, engine: AlertEngine) -> None:
        for alert_id in engine.misapplied():
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
        session.info[_PENDING] = True
        if session.info.get(_WATCHED) is self:
            return
        session.info[_WATCHED] = self

        def on_commit(sess: Session) -> None:
            if not sess.in_nested_transaction():  # a savepoint's release commits nothing yet
                sess.info[_COMMITTED] = True

        def on_end(sess: Session, transaction: SessionTransaction) -> None:
            if transaction.parent is not None:
                return
            committed = sess.info.pop(_COMMITTED, False)
            if sess.info.pop(_PENDING, False) and not committed:
                log.info("alerts: the transaction did not commit, reloading the alert state")
                self._engine = None

        event.listen(session, "after_commit", on_commit)
        event.listen(session, "after_transaction_end", on_end)


def _delete_orphan_states(session: Session) -> None:
    """States of alerts removed while the daemon still held them (and saved their state)."""
    session.execute(
        sa.delete(AlertStateRow).where(
            AlertStateRow.alert_id.not_in(sa.select(TemperatureAlert.id))
        )
    )


def _signature(session: Session) -> tuple[Any, ...]:
    """Changes whenever an alert is added, removed or edited (from any process)."""
    row = session.execute(
        sa.select(
            sa.func.count(TemperatureAlert.id),
            sa.func.max(TemperatureAlert.id),
            sa.func.max(TemperatureAlert.updated_at),
        )
    ).one()
    return tuple(row)


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
    table = cast(sa.Table, AlertStateRow.__table__)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    columns = ("rule_key", "arm", "low_arm", "last_fired", "changed_at", "window_reset_at")
    statement = insert.on_conflict_do_update(
        index_elements=[table.c.alert_id],
        set_={name: insert.excluded[name] for name in (*columns, "updated_at")},
    )
    session.execute(
        statement,
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


# --------------------------------------------------------------------------- management


def _device_of(session: Session, serial: str) -> Device:
    device = session.scalar(sa.select(Device).where(Device.device_id == serial.strip()))
    if device is None:
        raise UsageError(f"no device with serial {serial.strip()!r}")
    return device


def _check_probe(session: Session, serial: str, probe: int) -> Unit | None:
    """Refuse a probe that cannot carry a temperature alert; return its unit when known.

    PROBES TABLE: when the cloud work's probes table lands on main, look the probe
    up there instead: refuse a probe the device does not have and take its unit.
    Until then any channel 1..9 is accepted and the latest stored reading tells the unit.
    """
    if not 1 <= probe <= MAX_CHANNEL:
        raise UsageError(f"probe: must be 1 to {MAX_CHANNEL}, got {probe}")
    unit = session.scalar(
        sa.select(ReadingRow.unit)
        .where(ReadingRow.device_id == serial, ReadingRow.probe == probe)
        .order_by(ReadingRow.time.desc())
        .limit(1)
    )
    if unit is None:
        return None
    known = Unit.parse(unit)
    if not known.is_temperature:
        raise UsageError(
            f"device {serial} probe {probe} measures humidity: "
            "temperature alerts cannot be set on it"
        )
    return known


def add_alert(
    session: Session,
    email: str,
    *,
    serial: str,
    probe: int,
    kind: AlertKind | str,
    target: float | None = None,
    low: float | None = None,
    high: float | None = None,
    threshold: float | None = None,
    unit: Unit | str | None = None,
    name: str | None = None,
) -> TemperatureAlert:
    """Create an alert for a user's device probe; UsageError names whatever is wrong.

    ``unit`` defaults to the unit the probe reports (°F when nothing is known yet).
    """
    user = get_user(session, email)
    kind = kind if isinstance(kind, AlertKind) else AlertKind.parse(kind)
    if unit is not None and not isinstance(unit, Unit):
        try:
            unit = Unit.parse(unit)
        except ValueError as exc:
            raise UsageError(f"unit: {exc}") from None
    _check_applicable(kind, target=target, low=low, high=high, threshold=threshold)
    if name is not None and len(name) > 100:
        raise UsageError("name: at most 100 characters")
    device = _device_of(session, serial)
    if device.user_id != user.id:
        raise UsageError(f"device {device.device_id} belongs to another user, not {user.email}")
    probe_unit = _check_probe(session, device.device_id, probe)
    unit = unit or probe_unit or Unit.FAHRENHEIT
    check_rule_values(kind, unit, target=target, low=low, high=high, threshold=threshold)
    alert = TemperatureAlert(
        user_id=user.id,
        device_id=device.device_id,
        probe_id=str(probe),
        name=name,
        alert_type=kind.value,
        target_temperature=target,
        min_temperature=low,
        max_temperature=high,
        threshold_value=threshold,
        temperature_unit=unit.value,
        is_active=True,
    )
    session.add(alert)
    session.flush()
    return alert


def _check_applicable(
    kind: AlertKind,
    *,
    target: float | None,
    low: float | None,
    high: float | None,
    threshold: float | None,
) -> None:
    if target is not None and kind is not AlertKind.TARGET:
        raise UsageError(f"a target temperature applies to target alerts, not {kind}")
    if (low is not None or high is not None) and kind is not AlertKind.RANGE:
        raise UsageError(f"min and max apply to range alerts, not {kind}")
    if threshold is not None and kind not in (AlertKind.RISING, AlertKind.FALLING):
        raise UsageError(f"a threshold applies to rising and falling alerts, not {kind}")


def get_alert(session: Session, alert_id: int) -> TemperatureAlert:
    alert = session.get(TemperatureAlert, alert_id)
    if alert is None:
        raise UsageError(f"no alert with id {alert_id}")
    return alert


def list_alerts(session: Session, email: str | None = None) -> Sequence[TemperatureAlert]:
    query = (
        sa.select(TemperatureAlert)
        .options(selectinload(TemperatureAlert.user))
        .order_by(TemperatureAlert.id)
    )
    if email is not None:
        query = query.where(TemperatureAlert.user_id == get_user(session, email).id)
    return session.scalars(query).all()


def alert_states(session: Session, ids: Iterable[int]) -> dict[int, AlertState]:
    """The saved arming states of these alerts (absent: fresh)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = session.scalars(sa.select(AlertStateRow).where(AlertStateRow.alert_id.in_(wanted)))
    return {row.alert_id: _state_of(row) for row in rows}


def set_alert_active(session: Session, alert_id: int, active: bool) -> TemperatureAlert:
    """Enable or disable an alert; either way it starts afresh (re-armed) when next active."""
    alert = get_alert(session, alert_id)
    alert.is_active = active
    alert.updated_at = utcnow()  # also when unchanged: the daemon re-reads its alerts
    _forget_state(session, alert.id)
    session.flush()
    return alert


def remove_alert(session: Session, alert_id: int) -> TemperatureAlert:
    """Delete an alert (its history stays)."""
    alert = get_alert(session, alert_id)
    _forget_state(session, alert.id)
    session.delete(alert)
    session.flush()
    return alert


def _forget_state(session: Session, alert_id: int) -> None:
    session.execute(sa.delete(AlertStateRow).where(AlertStateRow.alert_id == alert_id))


def history(
    session: Session,
    email: str | None = None,
    *,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[tuple[AlertHistory, str]]:
    """Past firings with the user's email, oldest first (the latest ``limit`` of them)."""
    query = sa.select(AlertHistory, User.email).join(User, User.id == AlertHistory.user_id)
    if email is not None:
        query = query.where(AlertHistory.user_id == get_user(session, email).id)
    if since is not None:
        query = query.where(AlertHistory.fired_at >= since)
    query = query.order_by(AlertHistory.fired_at.desc(), AlertHistory.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return [(row, address) for row, address in session.execute(query)][::-1]


def probe_target_alert(session: Session, serial: str, probe: int) -> TemperatureAlert | None:
    """The alert a probe's ``number`` entity controls: its first target alert, active first."""
    return _probe_alert(session, serial, probe, AlertKind.TARGET)


def probe_range_alert(session: Session, serial: str, probe: int) -> TemperatureAlert | None:
    """The alert a probe's two range ``number`` entities control: its first, active first."""
    return _probe_alert(session, serial, probe, AlertKind.RANGE)


def _probe_alert(
    session: Session, serial: str, probe: int, kind: AlertKind
) -> TemperatureAlert | None:
    disabled_last = sa.case((TemperatureAlert.is_active.is_not(False), 0), else_=1)
    return session.scalar(
        sa.select(TemperatureAlert)
        .where(
            TemperatureAlert.device_id == serial,
            TemperatureAlert.probe_id == str(probe),
            TemperatureAlert.alert_type == kind.value,
        )
        .order_by(disabled_last, TemperatureAlert.id)
        .limit(1)
    )


def probe_targets(session: Session) -> dict[tuple[str, int], Measurement]:
    """Every probe's active target (for the ``number`` entities' states), from the database."""
    rows = session.scalars(
        sa.select(TemperatureAlert)
        .where(
            TemperatureAlert.alert_type == AlertKind.TARGET.value,
            TemperatureAlert.is_active.is_not(False),
        )
        .order_by(TemperatureAlert.id)
    )
    out: dict[tuple[str, int], Measurement] = {}
    for row in rows:
        try:
            rule = rule_from_row(row)
        except AlertRuleError:
            continue
        if rule.probe not in out and rule.target is not None:
            out[rule.probe] = Measurement(rule.target, rule.unit)
    return out


def probe_ranges(session: Session) -> dict[tuple[str, int], tuple[Measurement, Measurement]]:
    """Every probe's active range (low, high), for the range ``number`` entities' states."""
    rows = session.scalars(
        sa.select(TemperatureAlert)
        .where(
            TemperatureAlert.alert_type == AlertKind.RANGE.value,
            TemperatureAlert.is_active.is_not(False),
        )
        .order_by(TemperatureAlert.id)
    )
    out: dict[tuple[str, int], tuple[Measurement, Measurement]] = {}
    for row in rows:
        try:
            rule = rule_from_row(row)
        except AlertRuleError:
            continue
        if rule.probe not in out and rule.low is not None and rule.high is not None:
            out[rule.probe] = (Measurement(rule.low, rule.unit), Measurement(rule.high, rule.unit))
    return out


def set_probe_target(
    session: Session, serial: str, probe: int, value: float | None, unit: Unit | str
) -> TemperatureAlert | None:
    """Create, change or (value None or 0) remove a probe's target alert, for its owner.

    What a Home Assistant ``number`` entity does; the alert is the probe's first
    target alert, named "Probe N target" when created here.
    """
    values = None if not value else {"target_temperature": value}
    return _set_probe_alert(session, serial, probe, AlertKind.TARGET, unit, values)


def set_probe_range(
    session: Session,
    serial: str,
    probe: int,
    low: float | None,
    high: float | None,
    unit: Unit | str,
) -> TemperatureAlert | None:
    """Create, change or (either side None or 0) remove a probe's range alert, for its owner.

    What Home Assistant's range ``number`` entities do; the alert is the probe's
    first range alert (re-enabled if it was disabled), named "Probe N range" when
    created here. AlertRuleError when low is not below high.
    """
    values = None if not low or not high else {"min_temperature": low, "max_temperature": high}
    return _set_probe_alert(session, serial, probe, AlertKind.RANGE, unit, values)


def _set_probe_alert(
    session: Session,
    serial: str,
    probe: int,
    kind: AlertKind,
    unit: Unit | str,
    values: dict[str, float] | None,
) -> TemperatureAlert | None:
    """The probe's first alert of ``kind`` set to ``values`` (columns), or removed (None)."""
    device = _device_of(session, serial)
    _check_probe(session, device.device_id, probe)
    try:
        unit = unit if isinstance(unit, Unit) else Unit.parse(unit)
    except ValueError as exc:
        raise UsageError(f"unit: {exc}") from None
    alert = _probe_alert(session, device.device_id, probe, kind)
    if values is None:
        if alert is not None:
            remove_alert(session, alert.id)
        return None
    check_rule_values(
        kind,
        unit,
        target=values.get("target_temperature"),
        low=values.get("min_temperature"),
        high=values.get("max_temperature"),
    )
    if alert is None:
        alert = TemperatureAlert(
            user_id=device.user_id,
            device_id=device.device_id,
            probe_id=str(probe),
            name=f"Probe {probe} {kind.value}",
            alert_type=kind.value,
        )
        session.add(alert)
    elif (
        all(getattr(alert, column) == v for column, v in values.items())
        and alert.temperature_unit == unit.value
        and alert.is_active is not False
    ):
        return alert  # unchanged: keep its arming state
    for column, v in values.items():
        setattr(alert, column, v)
    alert.temperature_unit = unit.value
    alert.is_active = True
    alert.updated_at = utcnow()
    session.flush()
    _forget_state(session, alert.id)
    return alert
