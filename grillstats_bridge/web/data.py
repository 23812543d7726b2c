"""What the pages and the API show, as plain values, and the one ownership rule.

Every lookup by id or serial goes through :func:`owned_device`, :func:`owned_session`
or :func:`owned_alert`: another user's row is :class:`NotFound`, exactly like a row
that does not exist, so ids cannot be probed. The work itself is the services' (the
CLI's): ``alerts.rules``, ``sessions.service``, ``store.accounts``, ``store.tokens``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from grillstats_bridge.alerts import rules as alert_rules
from grillstats_bridge.alerts import service as alert_service
from grillstats_bridge.alerts.engine import AlertRuleError
from grillstats_bridge.errors import GrillstatsError, UsageError
from grillstats_bridge.sessions import service as sessions
from grillstats_bridge.store.models import (
    AlertHistory,
    ApiToken,
    Device,
    GrillingSession,
    TemperatureAlert,
    User,
)


class NotFound(GrillstatsError):
    """No such row for this user (whether it exists for another one is not said)."""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --------------------------------------------------------------------------- devices


def user_devices(db: Session, user_id: int) -> list[Device]:
    return list(
        db.scalars(
            sa.select(Device)
            .where(Device.user_id == user_id, Device.is_active.is_not(False))
            .options(selectinload(Device.probes))
            .order_by(Device.device_id)
        )
    )


def owned_device(db: Session, user_id: int, serial: str) -> Device:
    device = db.scalar(
        sa.select(Device)
        .where(Device.device_id == serial, Device.user_id == user_id)
        .options(selectinload(Device.probes))
    )
    if device is None:
        raise NotFound(f"no device {serial!r}")
    return device


def device_dict(device: Device) -> dict[str, Any]:
    return {
        "serial": device.device_id,
        "name": device.nickname or device.device_id,
        "model": device.model or device.device_type,
        "status": device.status,
        "online": device.status == "online",
        "battery": device.battery,
        "signal_dbm": device.signal_dbm,
        "last_seen": _iso(device.last_seen),
        "probes": [
            {
                "channel": p.channel,
                "label": p.label,
                "unit": p.unit,
                "connected": p.connected,
                "value": p.last_value if p.connected else None,
                "time": _iso(p.last_time),
            }
            for p in device.probes
        ],
    }


# --------------------------------------------------------------------------- sessions


def user_sessions(db: Session, user: User, now: datetime, limit: int = 200) -> list[dict[str, Any]]:
    return [
        sessions.summary(s, now)
        for s, _ in sessions.list_sessions(db, user_email=user.email, limit=limit)
    ]


def owned_session(db: Session, user_id: int, session_id: int) -> GrillingSession:
    row = db.get(GrillingSession, session_id)
    if row is None or row.user_id != user_id:
        raise NotFound(f"no session {session_id}")
    return row


def session_detail(db: Session, row: GrillingSession, now: datetime) -> dict[str, Any]:
    """A session's summary, per-probe statistics, targets and the alerts fired during it."""
    end = row.end_time or now
    fired = db.scalars(
        sa.select(AlertHistory)
        .where(
            AlertHistory.user_id == row.user_id,
            AlertHistory.device_id == row.device_id,
            AlertHistory.fired_at >= row.start_time,
            AlertHistory.fired_at <= end,
        )
        .order_by(AlertHistory.fired_at)
    )
    targets = {
        channel: m
        for (serial, channel), m in alert_rules.probe_targets(db).items()
        if serial == row.device_id
    }
    return sessions.summary(row, now) | {
        "probes": [
            {
                "probe": p.probe,
                "label": p.label,
                "unit": p.unit,
                "samples": p.sample_count,
                "min_temperature": p.min_temperature,
                "max_temperature": p.max_temperature,
                "avg_temperature": p.avg_temperature,
                "target": targets[p.probe].value if p.probe in targets else None,
            }
            for p in sessions.probe_statistics(db, row.id)
        ],
        "alerts_fired": [
            {
                "time": h.fired_at.isoformat(),
                "probe": h.probe,
                "name": h.alert_name,
                "event": h.event_type,
                "value": h.value,
                "threshold": h.threshold,
                "unit": h.unit,
            }
            for h in fired
        ],
    }


def session_series(
    db: Session, row: GrillingSession, now: datetime
) -> dict[int, list[tuple[datetime, float]]]:
    """Each probe's readings during the session, oldest first."""
    series: dict[int, list[tuple[datetime, float]]] = {}
    for r in sessions.session_readings(db, row, now):
        series.setdefault(r.probe, []).append((r.time, r.value))
    return series


# --------------------------------------------------------------------------- alerts


def user_alerts(db: Session, user: User) -> list[TemperatureAlert]:
    return list(alert_rules.list_alerts(db, user.email))


def owned_alert(db: Session, user_id: int, alert_id: int) -> TemperatureAlert:
    row = db.get(TemperatureAlert, alert_id)
    if row is None or row.user_id != user_id:
        raise NotFound(f"no alert {alert_id}")
    return row


def alert_dict(alert: TemperatureAlert) -> dict[str, Any]:
    try:
        condition = alert_service.rule_from_row(alert).describe()
    except AlertRuleError:
        condition = "invalid"
    return {
        "id": alert.id,
        "name": alert.name,
        "device": alert.device_id,
        "probe": int(alert.probe_id),
        "type": alert.alert_type,
        "condition": condition,
        "target": alert.target_temperature,
        "min": alert.min_temperature,
        "max": alert.max_temperature,
        "threshold": alert.threshold_value,
        "unit": alert.temperature_unit,
        "enabled": alert.is_active is not False,
        "last_triggered": _iso(alert.last_triggered),
    }


def _number(fields: dict[str, str], name: str) -> float | None:
    text = fields.get(name, "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{name}: not a number: {text[:20]!r}") from None


def alert_values(fields: dict[str, str]) -> dict[str, Any]:
    """The values of an alert form, parsed as the CLI's options are (empty: not given)."""
    return {
        "target": _number(fields, "target"),
        "low": _number(fields, "min"),
        "high": _number(fields, "max"),
        "threshold": _number(fields, "threshold"),
        "unit": fields.get("unit") or None,
        "name": fields.get("name", "").strip() or None,
    }


def add_owned_alert(db: Any, user: User, fields: dict[str, Any]) -> Any:
    """``alert add`` for this user, on one of their own devices (another's: no device)."""
    serial = str(fields.get("device", "")).strip()
    try:
        device = owned_device(db, user.id, serial)
    except NotFound:
        raise NotFound(f"no device with serial {serial!r}") from None
    try:
        probe = int(str(fields.get("probe", "")).strip())
    except ValueError:
        raise UsageError("probe: a channel number, e.g. 1") from None
    return alert_rules.add_alert(
        db,
        user.email,
        serial=device.device_id,
        probe=probe,
        kind=str(fields.get("type", "")),
        **alert_values({k: str(v) for k, v in fields.items() if v is not None}),
    )


# --------------------------------------------------------------------------- tokens


def token_dict(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "created_at": _iso(token.created_at),
        "last_used_at": _iso(token.last_used_at),
        "revoked": token.revoked_at is not None,
    }
