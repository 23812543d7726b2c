"""The cook feature in Home Assistant: estimates onto the probes' rows, events out.

The rows are in the one table (``ha.cook_entities``); this turns the tracker's
estimates into the values they show and publishes stall and ready events like alert
firings: on the device's event topic (its "Alerts" event entity) and the probe's
(where the device triggers listen), QoS 1, never retained. They are sent once, after
the transaction that found them committed: an event lost while the broker is away is
not sent again (a stall or a ready probe still shows in the entities' states).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from grillstats_bridge.cook.model import CookEvent, CookStep, Estimate, ProbeKey
from grillstats_bridge.cook.service import CookService
from grillstats_bridge.ha.cook_entities import ProbeCook
from grillstats_bridge.ha.entities import JsonValue
from grillstats_bridge.ha.payloads import dumps
from grillstats_bridge.ha.publisher import Publisher


def cook_views(estimates: Mapping[ProbeKey, Estimate]) -> dict[str, tuple[ProbeCook, ...]]:
    """Each device's probes' cooks as published (serial -> probes, by channel)."""
    out: dict[str, list[ProbeCook]] = {}
    for (serial, _), estimate in sorted(estimates.items()):
        out.setdefault(serial, []).append(probe_cook(estimate))
    return {serial: tuple(probes) for serial, probes in out.items()}


def probe_cook(estimate: Estimate) -> ProbeCook:
    def minutes(when: datetime | None) -> float | None:
        if estimate.done_at is None or when is None:
            return None
        return max((when - estimate.at).total_seconds() / 60.0, 0.0)

    return ProbeCook(
        channel=estimate.channel,
        state=estimate.state.value,
        done_at=estimate.done_at,
        low=estimate.low,
        high=estimate.high,
        minutes_left=estimate.minutes_left,
        minutes_low=minutes(estimate.low),
        minutes_high=minutes(estimate.high),
        progress=estimate.progress,
        stalled=estimate.stalled,
        method=estimate.method.value,
        stall_started=estimate.stall_started,
        past_cooks=estimate.past_cooks,
    )


def event_payload(event: CookEvent) -> dict[str, JsonValue]:
    stamp = int(event.at.timestamp())
    return {
        "event_type": event.kind.value,
        # stable for one event: drop a repeat by this id
        "event_id": f"cook-{event.serial}-{event.channel}-{event.kind.value}-{stamp}",
        "probe": event.channel,
        "temperature": round(event.value, 2),
        "unit": event.unit.symbol,
        "time": event.at.isoformat(),
        "stall_start": event.stall_start.isoformat() if event.stall_start else None,
        "stall_minutes": (
            None if event.stall_seconds is None else round(event.stall_seconds / 60.0, 1)
        ),
    }


def publish_cook(publisher: Publisher, service: CookService, steps: Iterable[CookStep]) -> None:
    """After a commit: every probe's estimate onto its entities, then the batch's events."""
    steps = list(steps)
    if not steps:
        return
    publisher.publish_cook(cook_views(service.last))
    for step in steps:
        for event in step.events:
            text = dumps(event_payload(event))
            naming = publisher.naming
            publisher.client.publish_event(naming.device_event_topic(event.serial), text)
            publisher.client.publish_event(
                naming.probe_event_topic(event.serial, event.channel), text
            )
