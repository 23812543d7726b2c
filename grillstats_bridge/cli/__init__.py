"""The ``grillstats-bridge`` command: argument parsing, logging set-up and exit codes.

Each command group lives in a module of its own with a ``register(subparsers)``
function; adding a group is one line in :data:`GROUPS`. A module is imported only
when one of its commands is on the command line (all of them for the overall
``--help``), so that ``run`` does not carry every other command's imports. Exit codes: 0 success,
1 an operation failed, 2 bad usage or configuration, 130 interrupted. Every
failure ends in one line on standard error (:func:`describe`); the traceback is
added only at ``--log-level DEBUG``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from grillstats_bridge import __version__
from grillstats_bridge.cli.common import EXIT_USAGE, Context, Parser, fail, first_line
from grillstats_bridge.config import ConfigError
from grillstats_bridge.errors import GrillstatsError, UsageError

# Each group's module (in grillstats_bridge.cli) and the commands it registers, in the
# order of the overall --help (tests/test_cli.py checks this against what they register).
GROUPS: dict[str, tuple[str, ...]] = {
    "config_cmd": ("config",),
    "db_cmd": ("db",),
    "user_cmd": ("user",),
    "token_cmd": ("token",),
    "alert_cmd": ("alert",),
    "account_cmd": ("account",),
    "devices_cmd": ("devices",),
    "simulate_cmd": ("simulate",),
    "session_cmd": ("session",),
    "mqtt_cmd": ("mqtt",),
    "run_cmd": ("run", "check-config", "demo"),
}

EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; for ``argv``, only with the groups whose commands it names (if any)."""
    parser = Parser(
        prog="grillstats-bridge",
        description="ThermoWorks cloud to MQTT / Home Assistant bridge.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="configuration file (default: $GRILLSTATS_CONFIG, ./config.yaml, "
        "/etc/grillstats-bridge/config.yaml, else built-in defaults)",
    )
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="override logging.level from the configuration",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in groups_for(argv):
        importlib.import_module(f"grillstats_bridge.cli.{module}").register(sub)
    return parser


def groups_for(argv: Sequence[str] | None) -> list[str]:
    """The modules of the commands named in ``argv``; all of them when it names none.

    Any word that is a command's name counts (an option's value too: then one module
    more is imported, nothing else changes), so the group of the real command is in.
    """
    words = set(argv or ())
    named = [module for module, commands in GROUPS.items() if words.intersection(commands)]
    return named or list(GROUPS)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    context = Context(args)
    try:
        context.setup_logging()
        return int(args.handler(args, context) or 0)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`devices list | head`): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except Exception as exc:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            traceback.print_exception(exc, file=sys.stderr)
        return fail(*describe(exc, context))
    finally:
        context.close()
        logging.shutdown()


def describe(exc: Exception, context: Context) -> tuple[str, int]:
    """The one line (and the exit code) for a command that failed with ``exc``."""
    if isinstance(exc, ConfigError):
        return f"configuration: {exc}", EXIT_USAGE
    if isinstance(exc, UsageError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, GrillstatsError):
        return str(exc), EXIT_FAILURE
    if isinstance(exc, SQLAlchemyError):
        # Which database, never its password; the driver's first line says what went wrong.
        problem = context.database_problem() or f"{type(exc).__name__}: {first_line(exc)}"
        return f"cannot use the database {context.database_name()}: {problem}", EXIT_FAILURE
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or first_line(exc)}", EXIT_FAILURE
    # A bug of ours: still one line, and the way to the traceback.
    return (
        f"unexpected {type(exc).__name__}: {first_line(exc)} "
        "(run with --log-level DEBUG for the traceback)",
        EXIT_FAILURE,
    )
