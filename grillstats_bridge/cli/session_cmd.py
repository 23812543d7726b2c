"""``session``: cooking sessions, started and ended by hand, listed, shown and exported.

Works whether or not the daemon runs: the database says which session is active,
and the daemon picks up what changed here on its next poll.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta
from typing import Any

from grillstats_bridge.cli.common import Context, add_command, add_group, print_table
from grillstats_bridge.cook.history import session_calibration
from grillstats_bridge.cook.model import Calibration, Rules
from grillstats_bridge.domain import Measurement, Unit, utcnow
from grillstats_bridge.sessions.model import ChangeKind, SessionSnapshot
from grillstats_bridge.sessions.names import format_duration
from grillstats_bridge.sessions.service import (
    STATUSES,
    SessionService,
    cook_figures,
    export_session,
    get_session,
    list_sessions,
    probe_statistics,
)
from grillstats_bridge.store.devices import device_serial
from grillstats_bridge.store.models import GrillingSession

TIME_FORMAT = "%Y-%m-%d %H:%M"


def register(sub: Any) -> None:
    session = add_group(sub, "session", "cooking sessions: start and end by hand, history, export")
    p = add_command(
        session,
        "start",
        _start,
        "start a manual session on a device (automatic detection pauses there until it ends)",
    )
    p.add_argument("serial", help="the device's serial")
    p.add_argument("--name", help="what to call it (default: generated from the cook)")
    for name, handler, text in (
        ("end", _end, "end an active session now"),
        ("cancel", _cancel, "cancel an active session now (kept, marked cancelled)"),
        ("show", _show, "a session's summary and per-probe statistics"),
    ):
        add_command(session, name, handler, text).add_argument("id", type=_session_id)
    p = add_command(session, "list", _list, "sessions, newest first")
    p.add_argument("user_email", nargs="?", help="only this user's sessions")
    p.add_argument("--device", metavar="SERIAL", help="only this device's sessions")
    p.add_argument(
        "--status",
        action="append",
        default=[],
        metavar="STATUS",
        help=f"only these statuses ({', '.join(STATUSES)}); repeat or separate with commas",
    )
    p.add_argument("--limit", type=_session_id, metavar="N", help="at most N sessions")
    p = add_command(session, "export", _export, "write a session's readings to standard output")
    p.add_argument("id", type=_session_id)
    p.add_argument(
        "--format",
        choices=["csv", "json"],
        default="csv",
        help="csv: time,probe,value,unit; json: the summary, per-probe statistics and readings",
    )


def _session_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _service(ctx: Context) -> SessionService:
    return SessionService(ctx.config.sessions)


def _start(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.database().transaction() as db:
        serial = device_serial(db, args.serial)
        change = _service(ctx).start(db, serial, utcnow(), args.name)[-1]
    s = change.session
    if change.kind is ChangeKind.STARTED:
        print(f"started session {s.session_id} on {s.serial}: {s.name}")
    else:
        print(
            f"session {s.session_id} on {s.serial} (running since {_time(s.start)}) is now manual"
        )
    return 0


def _end(args: argparse.Namespace, ctx: Context) -> int:
    return _finish(args, ctx, cancel=False)


def _cancel(args: argparse.Namespace, ctx: Context) -> int:
    return _finish(args, ctx, cancel=True)


def _finish(args: argparse.Namespace, ctx: Context, *, cancel: bool) -> int:
    with ctx.database().transaction() as db:
        s = _service(ctx).end(db, args.id, utcnow(), cancel=cancel)[-1].session
    verb = "cancelled" if cancel else "ended"
    print(f"{verb} session {s.session_id} on {s.serial}: {s.name} ({_stats_line(s)})")
    return 0


def _stats_line(s: SessionSnapshot) -> str:
    parts = [format_duration(s.duration())]
    if s.unit is not None and s.minimum is not None:
        parts += [
            f"min {_temp(s.minimum, s.unit)}",
            f"max {_temp(s.maximum, s.unit)}",
            f"avg {_temp(s.average, s.unit)}",
        ]
    return ", ".join(parts)


def _list(args: argparse.Namespace, ctx: Context) -> int:
    statuses = [part.strip() for given in args.status for part in given.split(",") if part.strip()]
    now = utcnow()
    with ctx.database().transaction() as db:
        found = list_sessions(
            db,
            user_email=args.user_email,
            serial=device_serial(db, args.device) if args.device is not None else None,
            statuses=statuses,
            limit=args.limit,
        )
        rows = [
            (
                s.id,
                s.device_id,
                email,
                s.session_type,
                s.status,
                _time(s.start_time),
                format_duration(_duration(s, now)),
                _temp(s.min_temperature, s.temperature_unit),
                _temp(s.max_temperature, s.temperature_unit),
                _temp(s.avg_temperature, s.temperature_unit),
                s.name,
            )
            for s, email in found
        ]
    if not rows:
        print("no sessions")
        return 0
    print_table(
        [
            "ID",
            "DEVICE",
            "USER",
            "TYPE",
            "STATUS",
            "START (UTC)",
            "LENGTH",
            "MIN",
            "MAX",
            "AVG",
            "NAME",
        ],
        rows,
    )
    return 0


def _show(args: argparse.Namespace, ctx: Context) -> int:
    now = utcnow()
    with ctx.database().transaction() as db:
        s = get_session(db, args.id)
        probes = probe_statistics(db, args.id)
        unit = s.temperature_unit
        fields = [
            ("session", s.id),
            ("name", s.name),
            ("device", s.device_id),
            ("type", s.session_type),
            ("status", (s.status or "active") + (f" ({s.end_reason})" if s.end_reason else "")),
            ("start (UTC)", _time(s.start_time)),
            ("end (UTC)", _time(s.end_time) if s.end_time else "-"),
            ("length", format_duration(_duration(s, now)) + ("" if s.end_time else " so far")),
            ("minimum", _temp(s.min_temperature, unit)),
            ("maximum", _temp(s.max_temperature, unit)),
            ("average", _temp(s.avg_temperature, unit) + " (time-weighted, all probes)"),
            ("stall (UTC)", _stall(s, now)),
            ("done (UTC)", _done(s)),
            ("past cooks", _past(session_calibration(db, s, Rules.from_config(ctx.config.cook)))),
        ]
        probe_rows = [
            (
                p.probe,
                p.label,
                p.sample_count,
                _temp(p.min_temperature, p.unit),
                _temp(p.max_temperature, p.unit),
                _temp(p.avg_temperature, p.unit),
                format_duration(timedelta(seconds=p.weighted_seconds)),
                _time(p.last_time) if p.last_time else None,
            )
            for p in probes
        ]
        cook_rows = [_cook_row(c) for c in cook_figures(db, args.id)]
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"{key + ':':<{width + 1}} {value if value not in (None, '') else '-'}")
    print()
    if not probe_rows:
        print("no probe readings yet")
        return 0
    print_table(
        ["PROBE", "LABEL", "SAMPLES", "MIN", "MAX", "AVG", "COVERED", "LAST (UTC)"], probe_rows
    )
    if cook_rows:  # the probes with a target, as the cook tracker last saw them
        print()
        print_table(
            [
                "PROBE",
                "TARGET",
                "STATE",
                "DONE AT (UTC)",
                "BAND (UTC)",
                "PROGRESS",
                "STALL (UTC)",
                "METHOD",
            ],
            cook_rows,
        )
    return 0


def _cook_row(c: dict[str, Any]) -> tuple[object, ...]:
    """One probe's cook figures: the estimate (or when it was ready), its band, the stall."""

    def at(key: str) -> datetime | None:
        value = c[key]
        return None if value is None else datetime.fromisoformat(value)

    done, low, high, ready = at("done_at"), at("done_low"), at("done_high"), at("ready_at")
    stall_start, stall_end = at("stall_start"), at("stall_end")
    if ready is not None:
        done_text = f"ready {_time(ready)}"
    else:
        done_text = f"{_time(done)} ({c['estimate_method']})" if done else "-"
    band = f"{_time(low)} - {_time(high)}" if low is not None and high is not None else "-"
    if stall_start is None:
        stall = "-"
    elif stall_end is not None:
        length = format_duration(stall_end - stall_start)
        stall = f"{_time(stall_start)} - {_time(stall_end)} ({length})"
    else:
        stall = f"{_time(stall_start)} - (not ended)"
    progress = "-" if c["progress"] is None else f"{c['progress']:.0f} %"
    return (
        c["probe"],
        _temp(c["target"], c["unit"]),
        c["cook_state"],
        done_text,
        band,
        progress,
        stall,
        c["cook_method"] or "-",
    )


def _export(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.database().transaction() as db:
        count = export_session(db, args.id, args.format, sys.stdout, utcnow())
    print(f"session {args.id}: {count} readings exported", file=sys.stderr)
    return 0


def _stall(s: GrillingSession, now: datetime) -> str:
    """The session's first stall (docs/cook.md): when, and how long."""
    if s.stall_start is None:
        return "-"
    if s.stall_end is not None:
        length = s.stall_end - s.stall_start
        return f"{_time(s.stall_start)} - {_time(s.stall_end)} ({format_duration(length)})"
    if s.end_time is None:
        return f"{_time(s.stall_start)} - (stalled {format_duration(now - s.stall_start)} so far)"
    return f"{_time(s.stall_start)} - (its end not seen)"


def _done(s: GrillingSession) -> str:
    """When the cook's first probe reached its target (docs/cook.md)."""
    if s.cook_done_at is None or s.cook_target is None:
        return "-"
    unit = Unit(s.cook_unit) if s.cook_unit in ("F", "C") else None
    target = f"{s.cook_target:g} {unit.symbol}" if unit is not None else f"{s.cook_target:g}"
    return f"{_time(s.cook_done_at)} (probe {s.cook_probe} at {target})"


def _past(found: tuple[Measurement, Calibration] | None) -> str:
    """How many of the owner's earlier cooks calibrate this one's estimate, and what they say."""
    if found is None:
        return "- (no target)"
    target, c = found
    if not c.past_cooks:
        return f"0 (target {target})"
    stall = "-" if c.stall_seconds is None else format_duration(timedelta(seconds=c.stall_seconds))
    return (
        f"{c.past_cooks} (target {target}): usual stall {stall}, pace {c.pace:.2f},"
        f" climb after the stall {c.climb_pace:.2f} of the rate before"
    )


def _duration(s: GrillingSession, now: datetime) -> timedelta:
    return max((s.end_time or now) - s.start_time, timedelta(0))


def _time(when: datetime) -> str:
    return when.strftime(TIME_FORMAT)


def _temp(value: float | None, unit: str | Unit | None) -> str:
    if value is None or unit is None:
        return "-"
    return f"{value:.1f} {Unit(unit).symbol}"
