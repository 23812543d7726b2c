"""The ``grillstats-bridge`` command: argument parsing, logging set-up and exit codes.

Each command group lives in a module of its own with a ``register(subparsers)``
function; adding a group is one line in :data:`GROUPS`. Exit codes: 0 success,
1 an operation failed, 2 bad usage or configuration, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from grillstats_bridge import __version__
from grillstats_bridge.cli import (
    account_cmd,
    alert_cmd,
    config_cmd,
    db_cmd,
    devices_cmd,
    mqtt_cmd,
    run_cmd,
    session_cmd,
    simulate_cmd,
    user_cmd,
)
from grillstats_bridge.cli.common import Context, fail
from grillstats_bridge.config import ConfigError
from grillstats_bridge.errors import GrillstatsError, UsageError

GROUPS = [
    config_cmd,
    db_cmd,
    user_cmd,
    alert_cmd,
    account_cmd,
    devices_cmd,
    simulate_cmd,
    session_cmd,
    mqtt_cmd,
    run_cmd,
]

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    context = Context(args)
    try:
        context.setup_logging()
        return int(args.handler(args, context) or 0)
    except ConfigError as exc:
        return fail(f"configuration: {exc}", EXIT_USAGE)
    except UsageError as exc:
        return fail(str(exc), EXIT_USAGE)
    except GrillstatsError as exc:
        return fail(str(exc), EXIT_FAILURE)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`devices list | head`): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    finally:
        context.close()
        logging.shutdown()
