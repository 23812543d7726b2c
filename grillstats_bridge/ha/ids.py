"""Stable ids for topics and unique ids, derived from serials (pure)."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def sanitize(text: str) -> str:
    """``10:06:1C:6F:47:70`` -> ``10_06_1C_6F_47_70``: what HA allows in topic levels and ids."""
    return _UNSAFE.sub("_", text) or "_"
