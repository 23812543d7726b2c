"""The cook feature in Home Assistant: estimates onto the probes' rows, events out.

The rows are in the one table (``ha.cook_entities``); this turns the tracker's
estimates into the values they show and publishes stall and ready events like alert
firings: on the device's event topic (its "Alerts" event entity) and the probe's
(where the device triggers listen), QoS 1, never retained, at least once: they wait
in ``cook_events`` (``cook.events``) until the broker acknowledged them, and the
daemon's outbox sends them (:class:`CookEvents`) after an outage or a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from grillstats_bridge.cook import events
from grillstats_bridge.cook.events import StoredEvent
from grillstats_bridge.cook.model import CookStep, Estimate, ProbeKey
from grillstats_bridge.cook.service import CookService
from grillstats_bridge.ha.cook_entities import ProbeCook
from grillstats_bridge.ha.entities import JsonValue
from grillstats_bridge.ha.payloads import dumps
from grillstats_bridge.ha.publisher import Publisher
from grillstats_bridge.mqtt.messages import Delivery, DeliveryStatus


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


def event_payload(stored: StoredEvent) -> dict[str, JsonValue]:
    event = stored.event
    return {
        "event_type": event.kind.value,
        "event_id": stored.event_id,  # stable across re-sends: drop a repeat by this id
        "probe": event.channel,
        "temperature": round(event.value, 2),
        "unit": event.unit.symbol,
        "time": event.at.isoformat(),
        "stall_start": event.stall_start.isoformat() if event.stall_start else None,
        "stall_minutes": (
            None if event.stall_seconds is None else round(event.stall_seconds / 60.0, 1)
        ),
        "session_id": stored.session_id,
    }


def publish_cook(publisher: Publisher, service: CookService, steps: Iterable[CookStep]) -> bool:
    """After a commit: every probe's estimate onto its entities; True if events now wait
    in the outbox (the daemon drains it)."""
    steps = list(steps)
    if not steps:
        return False
    publisher.publish_cook(cook_views(service.last))
    return any(step.events for step in steps)


class CookEvents:
    """What the daemon's outbox needs for the cook's events: read, send, mark."""

    def __init__(
        self,
        publisher: Publisher,
        accounts: Callable[[], Collection[int] | None] = lambda: None,
    ) -> None:
        self.publisher = publisher
        self.accounts = accounts  # whose events this process publishes (None: everyone's)

    def pending(self, db: Session, limit: int) -> Sequence[tuple[int, StoredEvent]]:
        return events.pending(db, limit, users=self.accounts())

    @staticmethod
    def mark(db: Session, ids: list[int], at: datetime) -> int:
        return events.mark_published(db, ids, at)

    def send(self, stored: StoredEvent, on_done: Callable[[Delivery], None]) -> Delivery:
        """One event on its device's event topic, then the probe's (the device triggers);
        ``on_done`` follows the device's message."""
        event = stored.event
        text = dumps(event_payload(stored))
        naming = self.publisher.device_naming(event.serial, stored.user_id)
        client = self.publisher.client
        delivery = client.publish_event(
            naming.device_event_topic(event.serial), text, on_done=on_done
        )
        if delivery.status is not DeliveryStatus.REJECTED:
            # Not when refused: the outbox sends it again, and the triggers' copy with it.
            client.publish_event(naming.probe_event_topic(event.serial, event.channel), text)
        return delivery
