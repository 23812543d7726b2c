"""The outage journal: readings buffered while the database was away, kept across a restart.

A stop during a database outage writes the buffer here (one JSON object a line, the
file created 0600 and replaced whole, so a crash mid-write leaves the old file or the
new one, never half of one); the next start reads it back and replays it through the
pipeline before any new poll. The file lives next to ``security.key_file``, in the
state directory.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from grillstats_bridge.config import SecurityConfig
from grillstats_bridge.domain import Reading, Unit
from grillstats_bridge.errors import GrillstatsError

# A reading with the user id of the account whose poll brought it (only that user's
# devices are stored from it).
OwnedReading = tuple[int, Reading]

JOURNAL_NAME = "grillstats-journal.jsonl"


class JournalError(GrillstatsError):
    """The journal cannot be written or read; the message names the file and why."""


def journal_path(security: SecurityConfig) -> Path:
    """The journal's file: in the directory of the key file (the state directory)."""
    return Path(security.key_file).parent / JOURNAL_NAME


class Journal:
    """One file of readings: :meth:`save` replaces it, :meth:`load` reads it, :meth:`clear`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, readings: Sequence[OwnedReading]) -> None:
        """Write every reading (replacing the file), fsync'd; JournalError when it cannot."""
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                for user_id, r in readings:
                    fh.write(json.dumps(_row(user_id, r), separators=(",", ":")) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            raise JournalError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def load(self) -> list[OwnedReading]:
        """The readings saved (none when there is no file); JournalError when unreadable.

        A line that does not parse (a file edited by hand, a disk error) is skipped and
        counted in :attr:`skipped`, not fatal: the other readings are still worth having.
        """
        self.skipped = 0
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise JournalError(f"cannot read {self.path}: {_reason(exc)}") from None
        readings: list[OwnedReading] = []
        for line in text.splitlines():
            try:
                row = json.loads(line)
                user_id = row["user"]
                if not isinstance(user_id, int):
                    raise TypeError("user")
                readings.append((user_id, _reading(row)))
            except (ValueError, KeyError, TypeError):
                self.skipped += 1
        return readings

    def clear(self) -> None:
        """Remove the file (its readings are in the database now)."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise JournalError(f"cannot remove {self.path}: {exc.strerror or exc}") from None

    def exists(self) -> bool:
        return self.path.exists()


def _row(user_id: int, r: Reading) -> dict[str, object]:
    return {
        "user": user_id,
        "serial": r.serial,
        "channel": r.channel,
        "time": r.time.isoformat(),
        "value": r.value,
        "unit": str(r.unit),
    }


def _reading(row: dict[str, object]) -> Reading:
    when = datetime.fromisoformat(str(row["time"]))
    if when.tzinfo is None:
        raise ValueError("a time without its zone")
    value = row["value"]
    if value is not None and not isinstance(value, (int, float)):
        raise TypeError("value")
    channel = row["channel"]
    if not isinstance(channel, int):
        raise TypeError("channel")
    return Reading(
        serial=str(row["serial"]),
        channel=channel,
        time=when,
        value=None if value is None else float(value),
        unit=Unit(str(row["unit"])),
    )


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__
