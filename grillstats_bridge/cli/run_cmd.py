"""``run`` (the daemon), ``check-config`` and ``demo``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from grillstats_bridge.bridge.identity import ProcessIdentity
from grillstats_bridge.cli.common import Context, add_command, positive_float, positive_int
from grillstats_bridge.cli.logsetup import tag_log_lines
from grillstats_bridge.config import ConfigError, load_config
from grillstats_bridge.errors import GrillstatsError, UsageError
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
    p.add_argument(
        "--processes",
        type=positive_int,
        default=1,
        metavar="N",
        help="run N bridge processes (PostgreSQL only), each its own MQTT client and health "
        "port (http.port + its index), restarted when one dies (default 1)",
    )
    p.add_argument(
        "--process-index",
        type=int,
        metavar="I",
        help="be process I of --processes N, without a supervisor "
        "(what each grillstats-bridge@I.service instance runs)",
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
    from grillstats_bridge.bridge.processes import process_config

    count, index = args.processes, args.process_index
    if index is not None and not 0 <= index < count:
        raise UsageError(f"--process-index {index}: must be 0 to {count - 1} (--processes {count})")
    if count > 1 and ctx.config.database.url.startswith("sqlite"):
        raise UsageError(
            f"--processes {count}: a SQLite database serves one process; "
            "use PostgreSQL for more (database.url)"
        )
    if count > 1 and index is None:
        return _supervise(args, ctx)
    identity = ProcessIdentity(index or 0, count)
    if identity.several:
        tag_log_lines(f"process {identity.index}")
    database = ctx.database(require_head=not args.migrate)
    if args.migrate:
        _migrate(database)
    try:
        bridge = Bridge(process_config(ctx.config, identity), database=database, identity=identity)
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


def _migrate(database: Any) -> None:
    before = migrate.current_revision(database)
    migrate.upgrade(database)
    after = migrate.current_revision(database)
    if before != after:
        log.info("database migrated: %s -> %s", before or "base", after)


def _supervise(args: argparse.Namespace, ctx: Context) -> int:
    """``run --processes N``: migrate once (with --migrate), then run and watch N children."""
    from grillstats_bridge.bridge.processes import bridge_offline
    from grillstats_bridge.cli.supervise import Supervisor
    from grillstats_bridge.store.secrets import SecretBox

    count = args.processes
    database = ctx.database(require_head=not args.migrate)
    if args.migrate:
        _migrate(database)
    # The key file, when it is to be made, is made once, here: children racing to make it
    # could each read another's half-written file.
    SecretBox.from_config(ctx.config.security, database=database)
    database.dispose()  # the children have their own; the supervisor keeps no connection
    prefix = [sys.executable, "-m", "grillstats_bridge"]
    if getattr(args, "config", None):
        prefix += ["--config", args.config]
    if getattr(args, "log_level", None):
        prefix += ["--log-level", args.log_level]

    def command(index: int) -> list[str]:
        return [*prefix, "run", "--processes", str(count), "--process-index", str(index)]

    supervisor = Supervisor(command, count)
    log.info("starting %d bridge processes", count)
    code = supervisor.run()
    if supervisor.any_ready:  # it was this bridge's: not another's, that refused our children
        bridge_offline(ctx.config, ProcessIdentity(0, count))
    if supervisor.failed:
        raise GrillstatsError(supervisor.failed)
    log.info("stopped")
    return code


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
    from grillstats_bridge.bridge.processes import process_config

    try:
        config = load_config(getattr(ctx.args, "config", None))
    except ConfigError as exc:
        log.error("SIGHUP: configuration not reloaded: %s", exc)
        return
    bridge.reload(process_config(config, bridge.identity))


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
