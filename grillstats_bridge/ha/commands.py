"""Commands from Home Assistant over MQTT, parsed strictly (pure).

What the bridge accepts, and nothing else:

* ``<root>/device/<id>/probe/<channel>/<key>/set`` with ``key`` one of
  ``ha.entities.COMMANDS`` (a probe's target and range numbers): a plain decimal
  number (``203``, ``-18``, ``62.5``) within ``TARGET_MIN`` to ``TARGET_MAX``, or ``0``,
  empty, ``none`` or ``null`` to remove the alert;
* ``<root>/device/<id>/probe/<channel>/cook_method/set`` (a probe's cook method select):
  one of ``ha.cook_entities.COOK_METHODS``, exactly;
* ``<root>/device/<id>/session/start/set`` and ``.../end/set`` (the session buttons):
  any payload (HA sends ``PRESS``), or JSON ``{"name": ...}`` to name the session.

``<id>`` is a device id (``ha.ids.device_id``: ``[A-Za-z0-9_-]``), ``<channel>`` 1
to 3 ASCII digits without a leading zero. A payload is at most
:data:`MAX_COMMAND_BYTES` of UTF-8. Numbers are ASCII digits with an optional sign
and decimal point: no ``nan``, ``inf``, exponent, ``_`` or other scripts' digits
(all of which Python's ``float`` takes). Anything else raises :class:`CommandError`,
whose text is one short line that never quotes more than a prefix of what came.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from grillstats_bridge.ha.cook_entities import COOK_METHOD, COOK_METHODS
from grillstats_bridge.ha.entities import COMMANDS, TARGET_MAX, TARGET_MIN

MAX_COMMAND_BYTES = 256
SESSION_BUTTONS = ("start", "end")
CLEAR_WORDS = ("", "none", "null")  # besides 0: what removes a probe's alert
_DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")
_CHANNEL = re.compile(r"[1-9][0-9]{0,2}")
_NUMBER = re.compile(r"[+-]?(?:[0-9]{1,7}(?:\.[0-9]{0,6})?|\.[0-9]{1,6})")
_SHOWN = 60  # characters of a topic or payload a log line quotes at most


class CommandError(ValueError):
    """A command that is refused: the text says why, in one short line."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CommandTopic:
    """Where a command went: the device id, the probe (None for a session button), the key."""

    sid: str
    key: str  # a COMMANDS key (target, range_low, range_high), COOK_METHOD or a SESSION_BUTTONS one
    channel: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Command:
    """A command understood: a number's value (None: remove), a select's option or a
    button's session name."""

    topic: CommandTopic
    value: float | None = None
    name: str | None = None
    option: str | None = None


def parse_command(root: str, topic: str, payload: bytes) -> Command | None:
    """A command as the daemon's handlers read it: its topic, then its payload.

    None for a probe command that is not one of ours (the alerts' wildcard also
    matches other keys); :class:`CommandError` for anything malformed.
    """
    where = parse_topic(root, topic)
    return None if where is None else parse_payload(where, payload)


def parse_topic(root: str, topic: str) -> CommandTopic | None:
    """``<root>/device/<id>/probe/<channel>/<key>/set`` or ``.../<id>/session/<button>/set``."""
    prefix = f"{root}/device/"
    if not topic.startswith(prefix):
        raise CommandError(f"not a command topic: {shown(topic)}")
    levels = topic[len(prefix) :].split("/")
    if len(levels) not in (4, 5) or levels[-1] != "set":
        raise CommandError(f"not a command topic: {shown(topic)}")
    if not _DEVICE_ID.fullmatch(levels[0]):
        raise CommandError(f"not a device id: {shown(levels[0])}")
    if len(levels) == 4:
        if levels[1] != "session" or levels[2] not in SESSION_BUTTONS:
            raise CommandError(f"not a command topic: {shown(topic)}")
        return CommandTopic(sid=levels[0], key=levels[2])
    if levels[1] != "probe":
        raise CommandError(f"not a command topic: {shown(topic)}")
    if not _CHANNEL.fullmatch(levels[2]):
        raise CommandError(f"not a probe number: {shown(levels[2])}")
    if levels[3] not in COMMANDS and levels[3] != COOK_METHOD:
        return None
    return CommandTopic(sid=levels[0], key=levels[3], channel=int(levels[2]))


def parse_payload(where: CommandTopic, payload: bytes) -> Command:
    """A number's value, or a button's session name (``{"name": ...}``, else None)."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(f"{len(payload)} bytes, over the limit of {MAX_COMMAND_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(f"not UTF-8: {shown(payload)}") from None
    if where.channel is None:
        return Command(topic=where, name=_session_name(text))
    if where.key == COOK_METHOD:
        if text not in COOK_METHODS:
            raise CommandError(f"not one of {', '.join(COOK_METHODS)}: {shown(text)}")
        return Command(topic=where, option=text)
    return Command(topic=where, value=parse_number(text))


def parse_number(text: str) -> float | None:
    """A number entity's value: a temperature, or None to remove the alert."""
    text = text.strip()
    if text.lower() in CLEAR_WORDS:
        return None
    if not _NUMBER.fullmatch(text):
        raise CommandError(f"not a number: {shown(text)}")
    value = float(text)
    if not math.isfinite(value):  # cannot happen with the pattern; kept as the rule
        raise CommandError(f"not a finite number: {shown(text)}")
    if value != 0 and not TARGET_MIN <= value <= TARGET_MAX:
        raise CommandError(f"outside {TARGET_MIN:g} to {TARGET_MAX:g}")
    return None if value == 0 else value


def _session_name(text: str) -> str | None:
    """A session name, when the press carries JSON ``{"name": ...}`` (HA's own press does not)."""
    try:
        data: Any = json.loads(text)
    except ValueError:  # RecursionError is not one: the size limit keeps nesting shallow
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name.strip() else None


def shown(text: str | bytes) -> str:
    """What a log line may quote of a topic or payload: a printable prefix, and the length."""
    prefix = repr(text[:_SHOWN])
    return prefix if len(text) <= _SHOWN else f"{prefix}... ({len(text)} in all)"
