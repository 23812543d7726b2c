"""What every command shares: the lazily loaded configuration and database, secret input, tables."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from grillstats_bridge.cli.logsetup import log_to
from grillstats_bridge.config import Config, load_config
from grillstats_bridge.errors import GrillstatsError, UsageError
from grillstats_bridge.store.db import Database, safe_url, sqlite_file_problem

Handler = Callable[[argparse.Namespace, "Context"], int | None]

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """Odd arguments end in one line, like every other error, not argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.partition(" ")[2]
        self.exit(
            EXIT_USAGE,
            f"grillstats-bridge: error: {command + ': ' if command else ''}{message} "
            f"(see '{self.prog} --help')\n",
        )


def fail(message: str, code: int) -> int:
    """Print one line on standard error and return the exit code."""
    print(f"grillstats-bridge: error: {message}", file=sys.stderr)
    return code


class Context:
    """Loads the configuration and opens the database only when a command needs them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._config: Config | None = None
        self._database: Database | None = None
        self._log_handler: logging.Handler | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(getattr(self.args, "config", None))
        return self._config

    def database(self, *, require_head: bool = True) -> Database:
        """The configured database; unless told otherwise, it must be migrated to head."""
        if self._database is None:
            from grillstats_bridge.store import revisions

            self._database = Database(self.config.database)
            if require_head:
                revisions.require_head(self._database)
        return self._database

    def database_name(self) -> str:
        """The configured database's URL without its password, for error lines."""
        if self._database is not None:
            return safe_url(self._database.url)
        if self._config is not None:
            return safe_url(self._config.database.url)
        return "(not configured)"

    def database_problem(self) -> str | None:
        """What is wrong with a SQLite file's directory, when that is why it cannot be opened."""
        return None if self._config is None else sqlite_file_problem(self._config.database.url)

    def setup_logging(self) -> None:
        level = getattr(self.args, "log_level", None)
        if level is None:
            try:
                level = self.config.logging.level
            except GrillstatsError:
                level = "INFO"  # the command reports the configuration error itself
        self._log_handler = log_to(logging.StreamHandler(sys.stderr), level)

    def close(self) -> None:
        if self._log_handler is not None:
            # In-process callers (tests) may close this stream; do not leave a handler on it.
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler = None
        if self._database is not None:
            self._database.dispose()
            self._database = None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a driver error's own, not SQLAlchemy's)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def add_command(
    sub: Any, name: str, handler: Handler, help: str, description: str | None = None
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=description or help
    )
    parser.set_defaults(handler=handler)
    return parser


def add_group(sub: Any, name: str, help: str) -> Any:
    """A command with subcommands (``db upgrade``, ``user add``...)."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
    return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)


def read_secret(
    label: str,
    *,
    file: str | None = None,
    confirm: bool = False,
    stdin: TextIO | None = None,
) -> str:
    """A password from ``file``, else a terminal prompt (twice to confirm), else stdin's first line.

    Never from the command line: arguments show in ``ps`` and shell history.
    """
    stdin = stdin or sys.stdin
    if file is not None:
        try:
            value = Path(file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise UsageError(f"cannot read {file}: {exc.strerror or exc}") from None
    elif stdin.isatty():
        value = getpass.getpass(f"{label}: ")
        if confirm and getpass.getpass(f"{label} (again): ") != value:
            raise UsageError("the two passwords differ")
    else:
        value = stdin.readline().rstrip("\r\n")
    if not value:
        raise UsageError(f"{label.lower()}: empty")
    return value


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], out: TextIO | None = None
) -> None:
    """A plain aligned text table; ``-`` for missing values."""
    out = out or sys.stdout
    text_rows = [["-" if v is None or v == "" else str(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*headers).rstrip(), file=out)
    for row in text_rows:
        print(line.format(*row).rstrip(), file=out)


# ------------------------------------------------------------------ argument types


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    return int(_bounded(text, int, 1, None, "a whole number"))


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    value = _bounded(text, float, None, None, "a number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value:g}")
    return value


def port_number(text: str) -> int:
    """An argparse type: 0 (any free port) to 65535."""
    return int(_bounded(text, int, 0, 65535, "a port number"))


def _bounded(
    text: str, kind: type[int] | type[float], low: float | None, high: float | None, what: str
) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
    if low is not None and high is not None and not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be {low:g} to {high:g}, got {value:g}")
    if low is not None and value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low:g}, got {value:g}")
    return value
