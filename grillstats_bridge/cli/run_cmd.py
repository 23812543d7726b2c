"""``run`` (the daemon), ``check-config`` and ``demo``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from grillstats_bridge.cli.common import Context, add_command, positive_float
from grillstats_bridge.config import ConfigError, load_config
from grillstats_bridge.errors import GrillstatsError
from grillstats_bridge.store import migrate

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "run",
        _run,
        "run the bridge: poll every linked account, store, publish (until SIGTERM or Ctrl-C)",
    )
    p.add_argument(
        "--migrate", action="store_true", help="migrate the database to the newest revision first"
    )
    add_command(
        sub,
        "check-config",
        _check,
        "validate the configuration, then try the database, the broker and each account",
    )
    p = add_command(
        sub,
        "demo",
        _demo,
        "run the bridge against the built-in simulator with a live view (nothing to configure)",
    )
    p.add_argument("--scenario", default="brisket", help="simulator scenario (default: brisket)")
    p.add_argument(
        "--speed",
        type=positive_float,
        default=120.0,
        help="simulated seconds per real second (default 120: a 12 h cook in 6 minutes)",
    )
    p.add_argument(
        "--data-dir",
        default="grillstats-demo",
        help="where the demo keeps its SQLite database and key (default ./grillstats-demo)",
    )
    p.add_argument("--no-view", action="store_true", help="log instead of drawing the live view")


def _run(args: argparse.Namespace, ctx: Context) -> int:
    from grillstats_bridge.bridge.daemon import Bridge

    database = ctx.database(require_head=not args.migrate)
    if args.migrate:
        before = migrate.current_revision(database)
        migrate.upgrade(database)
        after = migrate.current_revision(database)
        if before != after:
            log.info("database migrated: %s -> %s", before or "base", after)
    try:
        bridge = Bridge(ctx.config, database=database)
    except OSError as exc:
        raise GrillstatsError(f"cannot start: {exc.strerror or exc}") from None
    install_signal_handlers(bridge, ctx)
    try:
        bridge.start()
    except OSError as exc:  # e.g. the health port is taken
        bridge.shutdown()
        raise GrillstatsError(f"cannot start: {exc.strerror or exc}") from None
    bridge.run()
    return 1 if bridge.lost else 0  # the error line naming the count is logged already


def install_signal_handlers(bridge: Any, ctx: Context) -> None:
    """SIGTERM / SIGINT stop cleanly; SIGHUP reloads the configuration file."""

    def stop(signum: int, frame: FrameType | None) -> None:
        # Not here either: logging from the handler re-enters the stream the interrupted
        # code may be writing ("reentrant call"), and the exception escapes into it.
        threading.Thread(target=_stop, args=(bridge, signum), daemon=True).start()

    def reload(signum: int, frame: FrameType | None) -> None:
        # Not here: a signal handler must not take locks the interrupted code may hold.
        threading.Thread(target=_reload, args=(bridge, ctx), daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, reload)


def _stop(bridge: Any, signum: int) -> None:
    log.info("%s received", signal.Signals(signum).name)
    bridge.request_stop()


def _reload(bridge: Any, ctx: Context) -> None:
    try:
        config = load_config(getattr(ctx.args, "config", None))
    except ConfigError as exc:
        log.error("SIGHUP: configuration not reloaded: %s", exc)
        return
    bridge.reload(config)


def _check(args: argparse.Namespace, ctx: Context) -> int:
    """A short report of everything the daemon needs; non-zero when something fails."""
    from grillstats_bridge.cli.checks import run_checks

    config = ctx.config  # a bad configuration already stops here, with exit 2
    print(f"configuration: OK ({config.source or 'built-in defaults'})")
    failed = []
    for name, ok, detail in run_checks(config):
        if not ok:
            failed.append(name)
        print(f"{name}: {'OK' if ok else 'FAIL'} {detail}".rstrip())
    if failed:
        sys.stdout.flush()  # the report first, then the one error line
        raise GrillstatsError(f"{len(failed)} check(s) failed: {', '.join(failed)}")
    print("all checks passed")
    return 0


def _demo(args: argparse.Namespace, ctx: Context) -> int:
    from grillstats_bridge.cli.demo import run_demo

    return run_demo(
        scenario=args.scenario,
        speed=args.speed,
        data_dir=args.data_dir,
        view=not args.no_view and sys.stdout.isatty(),
        config_path=getattr(args, "config", None),
    )
