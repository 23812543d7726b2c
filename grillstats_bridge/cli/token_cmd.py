"""``token``: a user's API tokens for the REST API (``/api/v1``)."""

from __future__ import annotations

import argparse
from typing import Any

import sqlalchemy as sa

from grillstats_bridge.cli.common import Context, add_command, add_group, print_table
from grillstats_bridge.store import tokens
from grillstats_bridge.store.models import User
from grillstats_bridge.store.users import get_user


def register(sub: Any) -> None:
    token = add_group(sub, "token", "API tokens for the REST API")
    p = add_command(token, "create", _create, "create a token for a user (shown once)")
    p.add_argument("email", metavar="USER_EMAIL")
    p.add_argument("--name", default="cli", help="what the token is for (default: cli)")
    p = add_command(token, "list", _list, "list tokens (of one user, or everyone's)")
    p.add_argument("email", metavar="USER_EMAIL", nargs="?")
    p = add_command(token, "revoke", _revoke, "revoke a token: refused from the next request")
    p.add_argument("id", type=int, metavar="ID")


def _create(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.database().transaction() as session:
        row, token = tokens.create_token(session, get_user(session, args.email), args.name)
        print(f"created API token {row.id} ({row.name}) for {args.email.strip().lower()}:")
        print(token)
        print("it is shown only now: store it; send it as 'Authorization: Bearer TOKEN'")
    return 0


def _list(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.database().transaction() as session:
        user_id = get_user(session, args.email).id if args.email else None
        emails = {row.id: row.email for row in session.execute(sa.select(User.id, User.email))}
        rows = [
            (
                t.id,
                emails.get(t.user_id, "?"),
                t.name,
                t.prefix + "…",
                f"{t.created_at:%Y-%m-%d %H:%M}",
                f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else None,
                f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active",
            )
            for t in tokens.list_tokens(session, user_id)
        ]
    if not rows:
        print("no API tokens: create one with 'grillstats-bridge token create USER_EMAIL'")
        return 0
    print_table(["ID", "USER", "NAME", "TOKEN", "CREATED (UTC)", "LAST USED (UTC)", "STATE"], rows)
    return 0


def _revoke(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.database().transaction() as session:
        row = tokens.revoke_token(session, args.id)
        print(f"revoked API token {row.id} ({row.name})")
    return 0
