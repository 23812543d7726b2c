"""Where log lines go: one readable line per event, on standard error or in a file."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def log_to(handler: logging.Handler, level: str | int | None = None) -> logging.Handler:
    """Make ``handler`` the root logger's only handler (and set the level, if given)."""
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    if level is not None:
        root.setLevel(level)
    if logging.getLevelName(root.level) != "DEBUG":
        # Alembic narrates every context it opens at INFO; our commands say what happened.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    return handler


def tag_log_lines(tag: str) -> None:
    """Begin every log line with ``[tag]`` (which process of several wrote it)."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(
            logging.Formatter(LOG_FORMAT.replace("%(levelname)-7s", f"%(levelname)-7s [{tag}]"))
        )
