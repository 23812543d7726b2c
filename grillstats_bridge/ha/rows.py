"""The vocabulary of the entity table: platforms, sources, one row, one scope (pure).

The table itself (every row) is :mod:`grillstats_bridge.ha.entities`; feature modules
that add rows to it (``ha.cook_entities``) build them from these.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any, Generic, TypeVar

JsonValue = Any  # what json.dumps accepts; kept loose so rows stay one-liners

_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


class Component(StrEnum):
    """HA entity platforms (the second level of a discovery topic)."""

    SENSOR = "sensor"
    BINARY_SENSOR = "binary_sensor"
    EVENT = "event"
    BUTTON = "button"
    NUMBER = "number"
    SWITCH = "switch"
    SELECT = "select"
    DEVICE_AUTOMATION = "device_automation"


class Source(StrEnum):
    """Which of its subject's topics an entity reads."""

    STATE = "state"  # a key of the subject's JSON state (value_template)
    EVENT = "event"  # the subject's event topic (event entities, device triggers)
    NONE = "none"  # nothing (a button only sends)


C = TypeVar("C")


def _always(ctx: Any) -> bool:
    return True


@dataclass(frozen=True, kw_only=True)
class EntityDescription(Generic[C]):
    """One kind of entity: how to describe it to HA and how to compute its value.

    ``key`` is stable: it ends the unique id and the config topic, and names the
    value in the state JSON. ``value_fn`` gives that value (``None`` -> JSON null ->
    *unknown* in HA, never 0). ``attributes_fn`` adds the keys named in ``attributes``
    to the state JSON, and HA shows them as the entity's attributes (the keys are
    declared so that the discovery payload never depends on values). ``exists_fn``
    says whether a subject has this entity at all (a fan only on a gateway with a fan).
    A device trigger has no name in HA: ``name`` gives its ``subtype``.
    """

    key: str
    component: Component
    name: str | Callable[[C], str] | None = None
    value_fn: Callable[[C], JsonValue] | None = None
    exists_fn: Callable[[C], bool] = _always
    device_class: str | None = None
    state_class: str | None = None
    unit: str | Callable[[C], str | None] | None = None
    entity_category: str | None = None
    icon: str | None = None
    options: tuple[str, ...] = ()
    precision: int | None = None
    attributes: tuple[str, ...] = ()
    attributes_fn: Callable[[C], Mapping[str, JsonValue]] | None = None
    source: Source = Source.STATE
    command: bool = False  # HA sends to <subject topic>/<key>/set
    device_availability: bool = True  # False: only the bridge's (stays visible when offline)
    extra: Mapping[str, JsonValue] = field(default_factory=dict)  # further discovery keys

    def __post_init__(self) -> None:
        if not _KEY.match(self.key):
            raise ValueError(f"entity key {self.key!r}: lower case letters, digits and _")
        if bool(self.attributes) != (self.attributes_fn is not None):
            raise ValueError(f"entity {self.key!r}: give both attributes and attributes_fn")

    def name_for(self, ctx: C) -> str | None:
        return self.name(ctx) if callable(self.name) else self.name

    def unit_for(self, ctx: C) -> str | None:
        return self.unit(ctx) if callable(self.unit) else self.unit


@dataclass(frozen=True, kw_only=True)
class Scope(Generic[C]):
    """The entities of one kind of subject, plus plain fields its state JSON also carries."""

    name: str
    entities: tuple[EntityDescription[C], ...]
    extras_fn: Callable[[C], Mapping[str, JsonValue]] | None = None  # for MQTT consumers

    def with_entities(self, *more: EntityDescription[C]) -> Scope[C]:
        """This scope with more rows (how later features extend the table)."""
        return Scope(name=self.name, entities=self.entities + more, extras_fn=self.extras_fn)

    @cached_property
    def state_rows(self) -> tuple[StateRow[C], ...]:
        """The rows that put a value in the subject's JSON state, in table order, as
        ``(key, exists_fn or None for every subject, value_fn, attributes, attributes_fn)``:
        every poll builds every subject's state, and most rows read no state or always
        exist."""
        return tuple(
            (
                row.key,
                None if row.exists_fn is _always else row.exists_fn,
                row.value_fn,
                row.attributes,
                row.attributes_fn,
            )
            for row in self.entities
            if row.source is Source.STATE and (row.value_fn or row.attributes_fn)
        )


StateRow = tuple[
    str,
    Callable[[C], bool] | None,
    Callable[[C], JsonValue] | None,
    tuple[str, ...],
    Callable[[C], Mapping[str, JsonValue]] | None,
]
