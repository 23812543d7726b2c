"""The cook rows of the entity table (issue 15), pure: what a probe with a target shows.

Per temperature probe with a target: when it will be done (a timestamp, with the
band's ends as attributes), the minutes left, the progress from the cook's first
temperature, whether it is stalled, its cook state, and a select *cook method* the
person sets (``COOK_METHODS``; stored on the target alert, commands applied by
``alerts.entities.AlertControl``); per device the state of its least
advanced probe; stall and ready as device triggers on the probe's event topic (the
device's "Alerts" event entity lists them too). The values come from the cook
tracker through :class:`ProbeCook`; every one is null (unknown) until the probe has
an estimate. :mod:`grillstats_bridge.ha.entities` puts these rows in the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from grillstats_bridge.ha.rows import Component, EntityDescription, JsonValue, Source

if TYPE_CHECKING:
    from grillstats_bridge.ha.entities import DeviceView, ProbeView

# The cook tracker's states, least advanced first (cook.model.CookState, pinned by a test).
COOK_STATES = ("idle", "preheating", "cooking", "stalled", "almost_ready", "ready", "resting")
COOK_EVENT_TYPES = ("stall_started", "stall_ended", "ready")
# The cook methods a person may declare for a probe (cook.model.CookMethod, pinned by a
# test); the first is the default, nothing declared.
COOK_METHODS = ("auto", "reverse_sear")
COOK_METHOD = "cook_method"  # the select's key (and its command topic's)


@dataclass(frozen=True, kw_only=True)
class ProbeCook:
    """One probe's cook as published (from the tracker's estimate)."""

    channel: int
    state: str  # one of COOK_STATES
    done_at: datetime | None = None
    low: datetime | None = None
    high: datetime | None = None
    minutes_left: float | None = None
    minutes_low: float | None = None
    minutes_high: float | None = None
    progress: float | None = None
    stalled: bool = False
    method: str | None = None
    stall_started: datetime | None = None
    past_cooks: int = 0  # the person's past cooks that calibrated the estimate


def _has_target(view: ProbeView) -> bool:
    return view.probe.unit.is_temperature and view.alerts.target is not None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _whole(value: float | None) -> int | None:
    return None if value is None else round(value)


def _done_attributes(view: ProbeView) -> dict[str, JsonValue]:
    cook = view.cook
    return {
        "done_low": _iso(cook.low) if cook else None,
        "done_high": _iso(cook.high) if cook else None,
        "estimate_method": cook.method if cook else None,
        "past_cooks": cook.past_cooks if cook else None,
    }


def _minutes_attributes(view: ProbeView) -> dict[str, JsonValue]:
    cook = view.cook
    return {
        "minutes_low": _whole(cook.minutes_low) if cook else None,
        "minutes_high": _whole(cook.minutes_high) if cook else None,
        "past_cooks": cook.past_cooks if cook else None,
    }


def device_cook_state(view: DeviceView) -> str | None:
    """The state of the device's least advanced probe with a target."""
    states = [c.state for c in view.cook if c.state in COOK_STATES]
    return min(states, key=COOK_STATES.index) if states else None


def _trigger(event: str) -> EntityDescription[ProbeView]:
    return EntityDescription(
        key=f"on_{event}",
        component=Component.DEVICE_AUTOMATION,
        name=lambda p: f"probe_{p.probe.channel}",  # the trigger's subtype
        exists_fn=_has_target,
        source=Source.EVENT,
        extra={
            "type": event,
            "payload": event,
            "value_template": "{{ value_json.event_type }}",
            "qos": 1,
        },
    )


PROBE_COOK: tuple[EntityDescription[ProbeView], ...] = (
    EntityDescription(
        key="done_at",
        component=Component.SENSOR,
        name=lambda p: f"{p.label} done at",
        value_fn=lambda p: _iso(p.cook.done_at) if p.cook else None,
        exists_fn=_has_target,
        device_class="timestamp",
        attributes=("done_low", "done_high", "estimate_method", "past_cooks"),
        attributes_fn=_done_attributes,
    ),
    EntityDescription(
        key="time_to_target",
        component=Component.SENSOR,
        name=lambda p: f"{p.label} time to target",
        value_fn=lambda p: _whole(p.cook.minutes_left) if p.cook else None,
        exists_fn=_has_target,
        device_class="duration",
        unit="min",
        precision=0,
        attributes=("minutes_low", "minutes_high", "past_cooks"),
        attributes_fn=_minutes_attributes,
    ),
    EntityDescription(
        key="progress",
        component=Component.SENSOR,
        name=lambda p: f"{p.label} progress",
        value_fn=lambda p: p.cook.progress if p.cook else None,
        exists_fn=_has_target,
        unit="%",
        state_class="measurement",
        precision=0,
        icon="mdi:progress-clock",
    ),
    EntityDescription(
        key="stalled",
        component=Component.BINARY_SENSOR,
        name=lambda p: f"{p.label} stalled",
        value_fn=lambda p: p.cook.stalled if p.cook else None,
        exists_fn=_has_target,
        icon="mdi:timer-sand-paused",
        attributes=("stall_started",),
        attributes_fn=lambda p: {"stall_started": _iso(p.cook.stall_started) if p.cook else None},
    ),
    EntityDescription(
        key="cook_state",
        component=Component.SENSOR,
        name=lambda p: f"{p.label} cook state",
        value_fn=lambda p: p.cook.state if p.cook else None,
        exists_fn=_has_target,
        device_class="enum",
        options=COOK_STATES,
        icon="mdi:grill-outline",
    ),
    EntityDescription(  # the person declares how they cook it (alerts.entities applies it)
        key=COOK_METHOD,
        component=Component.SELECT,
        name=lambda p: f"{p.label} cook method",
        value_fn=lambda p: p.alerts.method,
        exists_fn=_has_target,
        options=COOK_METHODS,
        command=True,
        device_availability=False,  # declared before the device is switched on, as a target
        entity_category="config",
        icon="mdi:chef-hat",
    ),
    *(_trigger(event) for event in COOK_EVENT_TYPES),
)

DEVICE_COOK_STATE: EntityDescription[DeviceView] = EntityDescription(
    key="cook_state",
    component=Component.SENSOR,
    name="Cook state",
    value_fn=device_cook_state,
    exists_fn=lambda d: any(a.target is not None for a in d.alerts),
    device_class="enum",
    options=COOK_STATES,
    icon="mdi:grill-outline",
)
