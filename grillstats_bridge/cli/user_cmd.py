"""``user``: the bridge's own user accounts."""

from __future__ import annotations

import argparse
from typing import Any

from grillstats_bridge.cli.common import Context, add_command, add_group, print_table, read_secret
from grillstats_bridge.store import users
from grillstats_bridge.store.secrets import check_password_policy


def register(sub: Any) -> None:
    user = add_group(sub, "user", "manage the bridge's users")
    p = add_command(
        user,
        "add",
        _add,
        "add a user (password prompted, or read from stdin or --password-file)",
    )
    p.add_argument("email")
    p.add_argument("--name", help="display name")
    p.add_argument("--password-file", metavar="PATH", help="read the password from this file")
    add_command(user, "list", _list, "list users with their state")
    p = add_command(user, "passwd", _passwd, "set a user's password")
    p.add_argument("email")
    p.add_argument("--password-file", metavar="PATH", help="read the password from this file")
    for name, handler, text in (
        ("unlock", _unlock, "unlock a user locked after failed logins"),
        ("disable", _disable, "refuse every login of a user"),
        ("enable", _enable, "allow a disabled user to log in again"),
    ):
        add_command(user, name, handler, text).add_argument("email")


def _password(args: argparse.Namespace) -> str:
    password = read_secret("Password", file=args.password_file, confirm=True)
    check_password_policy(password)
    return password


def _add(args: argparse.Namespace, ctx: Context) -> int:
    database = ctx.database()
    users.normalize_email(args.email)  # a bad address is refused before the password prompt
    password = _password(args)
    with database.transaction() as session:
        user = users.add_user(session, args.email, password, ctx.config.security, name=args.name)
        print(f"added user {user.id}: {user.email}")
    return 0


def _list(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.database().transaction() as session:
        rows = [
            (
                u.id,
                u.email,
                u.name,
                "active" if u.is_active is not False else "disabled",
                "locked" if u.is_locked else "",
                u.failed_login_attempts or 0,
                u.created_at.strftime("%Y-%m-%d %H:%M") if u.created_at else None,
            )
            for u in users.list_users(session)
        ]
    if not rows:
        print("no users yet: add one with 'grillstats-bridge user add EMAIL'")
        return 0
    print_table(["ID", "EMAIL", "NAME", "STATE", "LOCK", "FAILED", "CREATED (UTC)"], rows)
    return 0


def _passwd(args: argparse.Namespace, ctx: Context) -> int:
    database = ctx.database()
    with database.transaction() as session:
        users.get_user(session, args.email)
    password = _password(args)
    with database.transaction() as session:
        user = users.set_password(session, args.email, password, ctx.config.security)
        print(f"password changed for {user.email}")
    return 0


def _unlock(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.database().transaction() as session:
        user = users.unlock(session, args.email)
        print(f"unlocked {user.email}")
    return 0


def _disable(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.database().transaction() as session:
        user = users.set_active(session, args.email, False)
        print(f"disabled {user.email}")
    return 0


def _enable(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.database().transaction() as session:
        user = users.set_active(session, args.email, True)
        print(f"enabled {user.email}")
    return 0
