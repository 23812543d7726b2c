"""``account``: link a bridge user to a ThermoWorks cloud account, show it, unlink it."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from grillstats_bridge.accounts import service
from grillstats_bridge.bridge.poller import poll_and_sync
from grillstats_bridge.cli.common import (
    Context,
    add_command,
    add_group,
    fail,
    print_table,
    read_secret,
)
from grillstats_bridge.store import accounts
from grillstats_bridge.store.users import normalize_email
from grillstats_bridge.thermoworks.errors import CloudError


def register(sub: Any) -> None:
    account = add_group(sub, "account", "link bridge users to their ThermoWorks cloud accounts")
    p = add_command(
        account,
        "link",
        _link,
        "sign in to ThermoWorks for a user and keep the (encrypted) tokens",
        "Sign in to the ThermoWorks cloud for USER_EMAIL. The ThermoWorks password is read "
        "from a terminal prompt, from --password-file, or from standard input when it is not "
        "a terminal. Only the tokens are kept, encrypted, unless --store-password is given.",
    )
    p.add_argument("user_email", metavar="USER_EMAIL", help="the bridge user")
    p.add_argument(
        "--provider",
        choices=service.PROVIDER_CHOICES,
        help="thermoworks (US cloud) or eti (UK / international); default: thermoworks.provider",
    )
    p.add_argument(
        "--tw-email", metavar="EMAIL", help="the ThermoWorks account's email (default: USER_EMAIL)"
    )
    p.add_argument(
        "--store-password",
        action="store_true",
        help="also keep the password, encrypted, to sign in again when the refresh token dies",
    )
    p.add_argument("--password-file", metavar="PATH", help="read the password from this file")
    p.add_argument(
        "--no-sync", action="store_true", help="do not fetch the account's devices after linking"
    )
    p = add_command(account, "show", _show, "show a user's ThermoWorks link (never its secrets)")
    p.add_argument("user_email", metavar="USER_EMAIL")
    p = add_command(account, "unlink", _unlink, "forget a user's ThermoWorks link and secrets")
    p.add_argument("user_email", metavar="USER_EMAIL")
    add_command(account, "list", _list, "list every linked account with its state")


def _link(args: argparse.Namespace, ctx: Context) -> int:
    database = ctx.database()
    if args.tw_email:
        normalize_email(args.tw_email)  # refused before the password prompt
    accounts.account_info(database, args.user_email)  # an unknown user, likewise
    password = read_secret("ThermoWorks password", file=args.password_file)
    info = service.link_account(
        database,
        ctx.config,
        args.user_email,
        password,
        provider=args.provider,
        tw_email=args.tw_email,
        store_password=args.store_password,
    )
    stored = " (password stored, encrypted)" if info.password_stored else ""
    print(f"linked {info.user_email} to {info.provider} account {info.tw_email}{stored}")
    if not args.no_sync:
        for _, result in poll_and_sync(database, ctx.config, [info.user_email]):
            if isinstance(result, CloudError):
                return fail(f"linked, but the devices were not fetched: {result}", 1)
            found = len(result.added) + len(result.updated)
            print(f"found {found} device{'s' if found != 1 else ''}")
    return 0


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def _show(args: argparse.Namespace, ctx: Context) -> int:
    info = accounts.account_info(ctx.database(), args.user_email)
    if info is None:
        print(f"{args.user_email.strip()} is not linked: use 'grillstats-bridge account link'")
        return 1
    state = info.state
    if info.state != accounts.CredentialState.OK:
        state = f"{info.state} since {_when(info.state_changed_at)}: {info.state_reason}"
    lines = [
        ("user", f"{info.user_email} (id {info.user_id})"),
        ("provider", info.provider),
        ("ThermoWorks email", info.tw_email or "-"),
        ("uid", info.uid or "-"),
        ("account id", info.account_id or "-"),
        ("state", state),
        ("token expires", _when(info.expires_at)),
        ("password stored", "yes (encrypted)" if info.password_stored else "no"),
        ("devices", f"{info.active_devices} active, {info.devices} known"),
        ("linked", _when(info.linked_at)),
        ("updated", _when(info.updated_at)),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key + ':':<{width + 1}} {value}")
    return 0


def _unlink(args: argparse.Namespace, ctx: Context) -> int:
    if accounts.unlink_account(ctx.database(), args.user_email):
        print(f"unlinked {args.user_email.strip()}: tokens and password forgotten")
        return 0
    print(f"{args.user_email.strip()} was not linked")
    return 1


def _list(args: argparse.Namespace, ctx: Context) -> int:
    rows = [
        (
            i.user_email,
            i.provider,
            i.tw_email,
            i.state,
            "yes" if i.password_stored else "no",
            f"{i.active_devices}/{i.devices}",
        )
        for i in accounts.list_accounts(ctx.database())
    ]
    if not rows:
        print("no linked accounts: use 'grillstats-bridge account link USER_EMAIL'")
        return 0
    print_table(["USER", "PROVIDER", "THERMOWORKS EMAIL", "STATE", "PASSWORD", "DEVICES"], rows)
    return 0
