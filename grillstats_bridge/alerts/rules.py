"""Managing a user's alert rules: add (validated against the probe), update, list, enable,
remove, history, and the per-probe target/range alerts behind the HA number entities.
Used by the CLI, the MQTT commands (and the web app), never by the poll path."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from grillstats_bridge.alerts.engine import (
    MAX_CHANNEL,
    AlertKind,
    AlertRuleError,
    AlertState,
    check_rule_values,
)
from grillstats_bridge.alerts.service import _state_of, rule_from_row
from grillstats_bridge.domain import Measurement, Unit, convert_temperature, utcnow
from grillstats_bridge.errors import UsageError
from grillstats_bridge.ha.cook_entities import COOK_METHODS
from grillstats_bridge.ha.entities import TARGET_MAX, TARGET_MIN
from grillstats_bridge.store.devices import find_device
from grillstats_bridge.store.models import (
    AlertHistory,
    AlertStateRow,
    Device,
    ReadingRow,
    TemperatureAlert,
    User,
)
from grillstats_bridge.store.users import get_user


def _device_of(session: Session, serial: str) -> Device:
    device = find_device(session, serial)
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
    unit = _checked_request(
        kind, unit, name, target=target, low=low, high=high, threshold=threshold
    )
    device = _device_of(session, serial)
    if device.user_id != user.id:
        raise UsageError(f"device {device.device_id} belongs to another user, not {user.email}")
    probe_unit = _check_probe(session, device.device_id, probe)
    unit = unit or probe_unit or Unit.FAHRENHEIT
    check_rule_values(kind, unit, target=target, low=low, high=high, threshold=threshold)
    check_readable(unit, target=target, low=low, high=high)
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


def update_alert(
    session: Session,
    alert_id: int,
    *,
    target: float | None = None,
    low: float | None = None,
    high: float | None = None,
    threshold: float | None = None,
    unit: Unit | str | None = None,
    name: str | None = None,
) -> TemperatureAlert:
    """Change an alert's values and name, checked as :func:`add_alert` checks them; its
    device, probe and kind stay. The alert starts afresh (re-armed), like when enabled."""
    alert = get_alert(session, alert_id)
    kind = AlertKind.parse(alert.alert_type)
    unit = _checked_request(
        kind, unit, name, target=target, low=low, high=high, threshold=threshold
    )
    probe_unit = _check_probe(session, alert.device_id, int(alert.probe_id))
    unit = unit or probe_unit or Unit.parse(alert.temperature_unit or "F")
    check_rule_values(kind, unit, target=target, low=low, high=high, threshold=threshold)
    check_readable(unit, target=target, low=low, high=high)
    alert.target_temperature = target
    alert.min_temperature = low
    alert.max_temperature = high
    alert.threshold_value = threshold
    alert.temperature_unit = unit.value
    alert.name = name
    alert.updated_at = utcnow()  # the daemon re-reads its alerts
    _forget_state(session, alert.id)
    session.flush()
    return alert


def readable_range(unit: Unit) -> tuple[float, float]:
    """The temperatures a probe reads, in ``unit``: Home Assistant's number range in °F.

    Rounded inward to a tenth, so that the bounds as shown are accepted.
    """
    low, high = (
        convert_temperature(TARGET_MIN, Unit.FAHRENHEIT, unit),
        convert_temperature(TARGET_MAX, Unit.FAHRENHEIT, unit),
    )
    return math.ceil(low * 10) / 10, math.floor(high * 10) / 10


def check_readable(
    unit: Unit, *, target: float | None, low: float | None, high: float | None
) -> None:
    """Refuse a temperature no probe reads (it could never fire), naming the allowed range."""
    lowest, highest = readable_range(unit)
    for name, value in (("target", target), ("min", low), ("max", high)):
        if value is not None and not lowest <= value <= highest:
            raise UsageError(
                f"{name}: {value:g} {unit.symbol} is outside what a probe reads "
                f"({lowest:g} to {highest:g} {unit.symbol})"
            )


def _checked_request(
    kind: AlertKind,
    unit: Unit | str | None,
    name: str | None,
    *,
    target: float | None,
    low: float | None,
    high: float | None,
    threshold: float | None,
) -> Unit | None:
    """What an add or an update asks, checked before the database is read: the unit
    parsed, the values that apply to ``kind``, the name's length."""
    if unit is not None and not isinstance(unit, Unit):
        try:
            unit = Unit.parse(unit)
        except ValueError as exc:
            raise UsageError(f"unit: {exc}") from None
    _check_applicable(kind, target=target, low=low, high=high, threshold=threshold)
    if name is not None and len(name) > 100:
        raise UsageError("name: at most 100 characters")
    return unit


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


def set_alert_method(session: Session, alert_id: int, method: str) -> TemperatureAlert:
    """Declare the cook method of a target alert's probe (``COOK_METHODS``; auto: none)."""
    alert = get_alert(session, alert_id)
    if alert.alert_type != AlertKind.TARGET.value:
        raise UsageError(
            f"alert {alert_id} is a {alert.alert_type} alert: a cook method goes on a target"
        )
    return _set_method(session, alert, method)


def set_probe_method(session: Session, serial: str, probe: int, method: str) -> TemperatureAlert:
    """Declare the cook method of a probe: on its target alert (what HA's select does)."""
    device = _device_of(session, serial)
    alert = _probe_alert(session, device.device_id, probe, AlertKind.TARGET)
    if alert is None or alert.is_active is False:
        raise UsageError(f"probe {probe} of {serial} has no target: set one first")
    return _set_method(session, alert, method)


def _set_method(session: Session, alert: TemperatureAlert, method: str) -> TemperatureAlert:
    if method not in COOK_METHODS:
        raise UsageError(f"cook method: not one of {', '.join(COOK_METHODS)}: {method[:40]!r}")
    alert.cook_method = None if method == COOK_METHODS[0] else method
    alert.updated_at = utcnow()
    session.flush()
    return alert


def probe_methods(session: Session) -> dict[tuple[str, int], str]:
    """Every probe's declared cook method (its first active target alert's; auto left out)."""
    rows = session.execute(
        sa.select(
            TemperatureAlert.device_id, TemperatureAlert.probe_id, TemperatureAlert.cook_method
        )
        .where(
            TemperatureAlert.alert_type == AlertKind.TARGET.value,
            TemperatureAlert.is_active.is_not(False),
        )
        .order_by(TemperatureAlert.id)
    ).all()
    out: dict[tuple[str, int], str] = {}
    seen: set[tuple[str, int]] = set()
    for serial, probe, method in rows:
        if not probe.isdigit() or (serial, int(probe)) in seen:
            continue
        seen.add((serial, int(probe)))
        if method in COOK_METHODS[1:]:
            out[(serial, int(probe))] = method
    return out


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
