"""``devices``: fetch a linked account's devices, list them with their probes, rename one,
give one (resold) to another user."""

from __future__ import annotations

import argparse
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from grillstats_bridge.bridge.poller import poll_and_sync
from grillstats_bridge.cli.common import Context, add_command, add_group, print_table
from grillstats_bridge.domain import Unit, utcnow
from grillstats_bridge.sessions.model import SessionStatus
from grillstats_bridge.sessions.service import SessionService
from grillstats_bridge.store.devices import find_device, rename_device, transfer_device
from grillstats_bridge.store.models import Device, GrillingSession, User
from grillstats_bridge.store.users import get_user
from grillstats_bridge.thermoworks.errors import CloudError, action_for


def register(sub: Any) -> None:
    devices = add_group(sub, "devices", "ThermoWorks devices and their probes")
    p = add_command(
        devices, "sync", _sync, "fetch the devices of one linked user (default: all) now"
    )
    p.add_argument("user_email", metavar="USER_EMAIL", nargs="?")
    p = add_command(devices, "list", _list, "list devices, probes and last readings")
    p.add_argument("user_email", metavar="USER_EMAIL", nargs="?")
    p.add_argument("--all", action="store_true", help="also list inactive devices")
    p = add_command(
        devices,
        "rename",
        _rename,
        "give a device a name of its own (an empty NAME follows the cloud's label again)",
    )
    p.add_argument("serial", metavar="SERIAL")
    p.add_argument("name", metavar="NAME")
    p = add_command(
        devices,
        "transfer",
        _transfer,
        "give a device (resold) to another user: its new readings are theirs, "
        "the old owner's readings, sessions and alerts stay the old owner's",
    )
    p.add_argument("serial", metavar="SERIAL")
    p.add_argument("--to", required=True, metavar="USER_EMAIL", help="the new owner")


def _sync(args: argparse.Namespace, ctx: Context) -> int:
    database = ctx.database()
    emails = [args.user_email] if args.user_email else None
    if args.user_email:
        with database.transaction() as db:
            user = get_user(db, args.user_email)
            if user.credentials is None:
                print(f"{user.email} is not linked: use 'grillstats-bridge account link'")
                return 1
    results = poll_and_sync(database, ctx.config, emails)
    if not results:
        print("no linked accounts: use 'grillstats-bridge account link USER_EMAIL'")
        return 0
    failed = 0
    for email, result in results:
        if isinstance(result, CloudError):
            failed += 1
            print(f"{email}: failed: {result} ({action_for(result).value})")
            continue
        parts = [f"{len(result.added) + len(result.updated)} devices"]
        if result.added:
            parts.append(f"new: {', '.join(result.added)}")
        if result.deactivated:
            parts.append(f"now inactive: {', '.join(result.deactivated)}")
        if result.conflicts:
            parts.append(f"owned by another user: {', '.join(result.conflicts)}")
        print(f"{email}: {'; '.join(parts)}")
    return 1 if failed else 0


def _value(value: float | None, unit: str, connected: bool) -> str:
    if not connected or value is None:
        return "unplugged"
    try:
        symbol = Unit(unit).symbol
    except ValueError:
        symbol = unit
    return f"{value:.1f} {symbol}"


def _list(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.database().transaction() as db:
        query = (
            sa.select(Device)
            .join(User, User.id == Device.user_id)
            .options(selectinload(Device.probes))
            .order_by(User.email, Device.device_id)
        )
        if args.user_email:
            query = query.where(Device.user_id == get_user(db, args.user_email).id)
        if not args.all:
            query = query.where(Device.is_active.is_not(False))
        devices = list(db.scalars(query))
        owners = {k: v for k, v in db.execute(sa.select(User.id, User.email))}
        if not devices:
            print("no devices yet: link an account ('account link') or run 'devices sync'")
            return 0
        for i, device in enumerate(devices):
            if i:
                print()
            details = [
                device.model or device.device_type or "?",
                device.status or "?",
                "" if device.is_active is not False else "inactive",
                f"battery {device.battery}%" if device.battery is not None else "",
                f"{device.signal_dbm} dBm" if device.signal_dbm is not None else "",
                f"seen {device.last_seen:%Y-%m-%d %H:%M:%S} UTC" if device.last_seen else "",
            ]
            name = device.nickname or device.device_id
            renamed = " (renamed)" if device.renamed_by_user else ""
            print(f"{name}{renamed}  [{device.device_id}]  {owners.get(device.user_id, '?')}")
            print("  " + ", ".join(d for d in details if d))
            rows = [
                (
                    f"  {p.channel}",
                    p.label,
                    _value(p.last_value, p.unit, p.connected) if p.connected else "unplugged",
                    f"{p.last_time:%H:%M:%S}" if p.last_time else None,
                    _alarms(
                        p.alarm_low_enabled,
                        p.alarm_low_value,
                        p.alarm_high_enabled,
                        p.alarm_high_value,
                        p.unit,
                    ),
                )
                for p in device.probes
            ]
            if rows:
                print_table(["  CH", "LABEL", "LAST", "AT (UTC)", "CLOUD ALARMS"], rows)
    return 0


def _alarms(
    low_on: bool | None, low: float | None, high_on: bool | None, high: float | None, unit: str
) -> str:
    parts = []
    if low_on and low is not None:
        parts.append(f"low {_value(low, unit, True)}")
    if high_on and high is not None:
        parts.append(f"high {_value(high, unit, True)}")
    return ", ".join(parts)


def _rename(args: argparse.Namespace, ctx: Context) -> int:
    row = rename_device(ctx.database(), args.serial, args.name)
    if row.renamed_by_user:
        print(f"{row.device_id} is now called {row.nickname!r}")
    else:
        print(f"{row.device_id} follows the cloud's label again ({row.nickname!r})")
    return 0


def _transfer(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.database().transaction() as db:
        new_owner = get_user(db, args.to)
        row = find_device(db, args.serial)
        running = None
        if row is not None and row.user_id != new_owner.id:
            # The old owner's cook ends here, theirs; the new owner's readings start anew.
            running = db.scalar(
                sa.select(GrillingSession.id).where(
                    GrillingSession.device_id == row.device_id,
                    GrillingSession.status == SessionStatus.ACTIVE,
                )
            )
            if running is not None:
                SessionService(ctx.config.sessions).end(db, running, utcnow())
        device, previous = transfer_device(db, args.serial, new_owner.id)
        old_email = db.scalar(sa.select(User.email).where(User.id == previous))
    ended = f"; session {running} ended" if running is not None else ""
    print(f"{device.device_id} now belongs to {new_owner.email} (was {old_email}){ended}")
    return 0
