"""``alert``: temperature alerts on a user's probes, and the history of their firings."""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta
from typing import Any

from grillstats_bridge.alerts import rules as alert_rules
from grillstats_bridge.alerts import service as alert_service
from grillstats_bridge.alerts.engine import AlertKind, AlertRuleError, AlertState, Arm
from grillstats_bridge.cli.common import Context, add_command, add_group, print_table
from grillstats_bridge.domain import ensure_utc, utcnow
from grillstats_bridge.errors import UsageError
from grillstats_bridge.ha.cook_entities import COOK_METHODS
from grillstats_bridge.store.models import TemperatureAlert

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|h|d|w)\s*$")
_RELATIVE_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def register(sub: Any) -> None:
    alert = add_group(sub, "alert", "manage temperature alerts and see their history")
    p = add_command(
        alert,
        "add",
        _add,
        "add an alert on a probe of a user's device",
        description="Add an alert. target: --target T; range: --min A --max B; "
        "rising / falling: --threshold D (degrees within alerts.rate_window). "
        "The unit defaults to the probe's own.",
    )
    p.add_argument("email", metavar="USER_EMAIL")
    p.add_argument("--device", required=True, metavar="SERIAL", help="the device's serial")
    p.add_argument("--probe", required=True, type=int, metavar="N", help="probe (channel) number")
    p.add_argument(
        "--type", required=True, choices=[k.value for k in AlertKind], dest="kind", help="kind"
    )
    p.add_argument("--target", type=float, metavar="T", help="target temperature")
    p.add_argument("--min", type=float, dest="low", metavar="A", help="range: lowest")
    p.add_argument("--max", type=float, dest="high", metavar="B", help="range: highest")
    p.add_argument("--threshold", type=float, metavar="D", help="rising / falling: degrees")
    p.add_argument("--unit", type=str.upper, choices=["F", "C"], help="F or C")
    p.add_argument("--name", help="a name for the alert")

    p = add_command(alert, "list", _list, "list alerts (of one user, or everyone's)")
    p.add_argument("email", metavar="USER_EMAIL", nargs="?")
    for name, handler, text in (
        ("enable", _enable, "enable an alert (it starts afresh)"),
        ("disable", _disable, "disable an alert"),
        ("remove", _remove, "delete an alert (its history stays)"),
    ):
        add_command(alert, name, handler, text).add_argument("id", type=int, metavar="ID")

    p = add_command(
        alert,
        "method",
        _method,
        "declare how a target alert's probe is cooked (the done-time estimate expects it)",
        description="auto: nothing declared; reverse_sear: slow, then seared near the target "
        "(cook.sear_below, cook.sear_time) until the user's past cooks teach their own sear.",
    )
    p.add_argument("id", type=int, metavar="ID", help="a target alert's id (alert list)")
    p.add_argument("method", choices=COOK_METHODS, metavar="METHOD", help=", ".join(COOK_METHODS))

    p = add_command(alert, "history", _history, "list past firings, oldest first")
    p.add_argument("email", metavar="USER_EMAIL", nargs="?")
    p.add_argument(
        "--since",
        type=parse_since,
        metavar="WHEN",
        help="an ISO date or time (UTC unless it says otherwise), or an age: 90m, 12h, 3d, 1w",
    )
    p.add_argument("--limit", type=int, default=50, help="at most this many, the latest")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``2026-06-01``, ``2026-06-01T18:00``, ``...+02:00``, or an age such as ``3d``."""
    match = _RELATIVE.match(text)
    if match:
        seconds = float(match.group(1)) * _RELATIVE_UNITS[match.group(2)]
        return (now or utcnow()) - timedelta(seconds=seconds)
    try:
        return ensure_utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a date, a time or an age: {text!r} (e.g. 2026-06-01, 2026-06-01T18:00, 12h, 3d)"
        ) from None


def _add(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.database().transaction() as session:
        alert = alert_rules.add_alert(
            session,
            args.email,
            serial=args.device,
            probe=args.probe,
            kind=args.kind,
            target=args.target,
            low=args.low,
            high=args.high,
            threshold=args.threshold,
            unit=args.unit,
            name=args.name,
        )
        print(
            f"added alert {alert.id}: {alert.alert_type} {_condition(alert)} "
            f"on {alert.device_id} probe {alert.probe_id}"
        )
    return 0


def _list(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.database().transaction() as session:
        alerts = alert_rules.list_alerts(session, args.email)
        states = alert_rules.alert_states(session, [a.id for a in alerts])
        rows = [
            (
                a.id,
                a.user.email,
                a.device_id,
                a.probe_id,
                a.alert_type,
                _condition(a),
                a.name,
                "enabled" if a.is_active is not False else "disabled",
                _arming(a, states.get(a.id)),
                _when(a.last_triggered),
            )
            for a in alerts
        ]
    if not rows:
        print("no alerts yet: add one with 'grillstats-bridge alert add USER_EMAIL ...'")
        return 0
    print_table(
        [
            "ID",
            "USER",
            "DEVICE",
            "PROBE",
            "TYPE",
            "CONDITION",
            "NAME",
            "STATE",
            "ARMING",
            "LAST TRIGGERED (UTC)",
        ],
        rows,
    )
    return 0


def _condition(alert: TemperatureAlert) -> str:
    try:
        return alert_service.rule_from_row(alert).describe()
    except AlertRuleError:
        return "invalid"


def _arming(alert: TemperatureAlert, state: AlertState | None) -> str:
    if alert.is_active is False:
        return ""
    try:
        key = alert_service.rule_from_row(alert).key
    except AlertRuleError:
        return "never evaluated"
    fresh = state is None or state.rule_key != key
    arm = Arm.ARMED if fresh or state is None else state.arm
    if alert.alert_type != AlertKind.RANGE.value:
        return arm.value
    low = Arm.WAITING if fresh or state is None else state.low_arm or Arm.WAITING
    sides = {Arm.WAITING: "waiting inside", Arm.ARMED: "armed", Arm.FIRED: "fired"}
    return f"high {sides[arm]}, low {sides[low]}"


def _when(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else None


def _enable(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.database().transaction() as session:
        alert = alert_rules.set_alert_active(session, args.id, True)
        print(f"enabled alert {alert.id}")
    return 0


def _disable(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.database().transaction() as session:
        alert = alert_rules.set_alert_active(session, args.id, False)
        print(f"disabled alert {alert.id}")
    return 0


def _remove(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.database().transaction() as session:
        alert = alert_rules.remove_alert(session, args.id)
        print(f"removed alert {alert.id}")
    return 0


def _method(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.database().transaction() as session:
        alert = alert_rules.set_alert_method(session, args.id, args.method)
        print(
            f"alert {alert.id} ({alert.device_id} probe {alert.probe_id}): "
            f"cook method {alert.cook_method or 'auto'}"
        )
    return 0


def _history(args: argparse.Namespace, ctx: Context) -> int:
    if args.limit < 1:
        raise UsageError(f"--limit: must be at least 1, got {args.limit}")
    with ctx.database().transaction() as session:
        found = alert_rules.history(session, args.email, since=args.since, limit=args.limit)
        rows = [
            (
                _when(h.fired_at),
                h.alert_id,
                h.alert_name,
                email,
                h.device_id,
                h.probe,
                h.event_type,
                f"{h.value:g} °{h.unit}",
                f"{h.threshold:g} °{h.unit}",
                _when(h.published_at) or "pending",
            )
            for h, email in found
        ]
    if not rows:
        print("no alert has fired" + (" in that period" if args.since else ""))
        return 0
    print_table(
        [
            "FIRED (UTC)",
            "ALERT",
            "NAME",
            "USER",
            "DEVICE",
            "PROBE",
            "EVENT",
            "TEMPERATURE",
            "THRESHOLD",
            "PUBLISHED (UTC)",
        ],
        rows,
    )
    return 0
