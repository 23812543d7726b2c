"""Stable ids for topics and unique ids, derived from serials (pure)."""

from __future__ import annotations

import functools
import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# What keeps today's id: no "_", nothing outside [A-Za-z0-9:-], and ":" only between
# non-empty groups (10:06:1C:6F:47:70, M100081209).
_KEPT = re.compile(r"[A-Za-z0-9-]+(?::[A-Za-z0-9-]+)*")
SUFFIX_LENGTH = 10  # hex digits of SHA-256: 40 bits


def sanitize(text: str) -> str:
    """``10:06:1C:6F:47:70`` -> ``10_06_1C_6F_47_70``: what HA allows in topic levels and ids."""
    return _UNSAFE.sub("_", text) or "_"


@functools.lru_cache(maxsize=65536)
def device_id(serial: str) -> str:
    """The id of a serial in topics, object ids and unique ids; two serials never share one.

    * A serial of ASCII letters, digits and ``-`` groups joined by single ``:`` keeps
      the id it always had: each ``:`` becomes ``_`` (``10:06:1C:6F:47:70`` ->
      ``10_06_1C_6F_47_70``, ``M100081209`` -> ``M100081209``).
    * Any other serial (with a ``_``, another character, an empty group, or empty)
      gets its sanitised text, ``__`` and the first 10 hex digits of the SHA-256 of
      the raw serial (``AA_BB`` -> ``AA_BB__<hash>``).

    Why no two serials share an id: a kept id never contains ``__`` (its groups are
    not empty) and a suffixed one always does, so a kept id never equals a suffixed
    one. Among kept serials, ``:`` -> ``_`` is undone by ``_`` -> ``:`` (a kept serial
    has no ``_``), so two kept serials with one id are the same serial. Two suffixed
    serials share an id only if their SHA-256 digests share 40 bits (about one
    chance in 10^12 per pair); the publisher refuses a device whose id is taken all
    the same, so even that shows as a warning, never as mixed states.
    """
    if _KEPT.fullmatch(serial):
        return serial.replace(":", "_")
    digest = hashlib.sha256(serial.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{sanitize(serial)}__{digest[:SUFFIX_LENGTH]}"
