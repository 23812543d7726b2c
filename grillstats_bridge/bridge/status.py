"""What the bridge reports about itself: ``GET /health`` and the bridge's HA device state.

Built from snapshots the daemon takes under its lock, so nothing here touches a thread's
state; it must never include a secret (the database URL is shown with its password hidden).
Each part of ``/health`` (database, mqtt, every account, pipeline, journal) says its
``health`` - "ok", "degraded" (working, with trouble) or "failing" (not working) - and
a ``reason`` in words when it is not "ok".
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from grillstats_bridge import __version__
from grillstats_bridge.bridge.pipeline import JournalInfo, Rejections
from grillstats_bridge.bridge.scheduler import AccountSchedule, AccountState
from grillstats_bridge.domain import Device
from grillstats_bridge.ha.entities import AccountStatus, BridgeHealth, BridgeStatus
from grillstats_bridge.mqtt.messages import MqttHealth
from grillstats_bridge.store.accounts import CredentialState
from grillstats_bridge.store.db import Database, safe_url
from grillstats_bridge.store.readings import ReadingBuffer


@dataclass
class AccountInfo:
    """What the daemon knows of one linked account (for health and the bridge entity)."""

    user_id: int
    label: str
    credentials: str = CredentialState.OK
    credentials_changed: datetime | None = None
    last_poll_seconds: float | None = None
    cloud_errors: int = 0
    devices: tuple[Device, ...] = ()


@dataclass
class Stats:
    polls: int = 0
    readings: int = 0  # new readings polled (an unplugged probe's marker included)
    values: int = 0  # of which carry a value (what the readings table receives)
    firings: int = 0
    cloud_errors: int = 0
    pipeline_errors: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    recent_firings: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    cloud_requests: deque[tuple[datetime, int]] = field(default_factory=deque)  # the last hour
    # The poll workers note requests while the pipeline thread sums them.
    _requests_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def note_pipeline_error(self) -> None:
        self.pipeline_errors += 1

    def note_requests(self, now: datetime, count: int) -> None:
        """Cloud requests made by a poll (for "cloud requests in the last hour")."""
        hour_ago = now - timedelta(hours=1)
        with self._requests_lock:
            if count:
                self.cloud_requests.append((now, count))
            while self.cloud_requests and self.cloud_requests[0][0] <= hour_ago:
                self.cloud_requests.popleft()

    def requests_last_hour(self, now: datetime) -> int:
        hour_ago = now - timedelta(hours=1)
        with self._requests_lock:
            return sum(n for at, n in self.cloud_requests if at > hour_ago)


def bridge_status(
    accounts: Iterable[AccountInfo],
    scheduled: Iterable[AccountSchedule],
    *,
    database_ok: bool,
    last_poll: datetime | None,
    cloud_errors: int,
    cloud_requests_hour: int = 0,
    rejected_readings: int = 0,
    processes: Mapping[str, int] | None = None,
) -> BridgeStatus:
    """The bridge's state for its HA device: degraded while the database or an account
    fails, error when every account fails."""
    statuses = tuple(
        AccountStatus(
            user_id=a.user_id,
            label=a.label or f"user {a.user_id}",
            reauth_needed=a.credentials != CredentialState.OK,
        )
        for a in sorted(accounts, key=lambda a: a.user_id)
    )
    schedules = list(scheduled)
    failing = [a for a in schedules if a.state is not AccountState.OK or a.failures]
    total = len(schedules)
    if not database_ok or (total and len(failing) == total):
        health = BridgeHealth.ERROR if total and len(failing) == total else BridgeHealth.DEGRADED
    elif failing:
        health = BridgeHealth.DEGRADED
    else:
        health = BridgeHealth.OK
    return BridgeStatus(
        status=health,
        last_poll=last_poll,
        cloud_errors=cloud_errors,
        accounts=statuses,
        accounts_failing=len(failing),
        cloud_requests_hour=cloud_requests_hour,
        rejected_readings=rejected_readings,
        log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()),
        processes=tuple(sorted((processes or {}).items())),
    )


OK, DEGRADED, FAILING = "ok", "degraded", "failing"


def _part(health: str, reason: str | None = None) -> dict[str, Any]:
    return {"health": health, "reason": None if health == OK else reason}


def account_health(a: AccountSchedule, credentials: str | None) -> dict[str, Any]:
    """One account: signed in, backing off until T, parked by Retry-After until T, refused."""
    if a.state is AccountState.PARKED or credentials not in (None, CredentialState.OK):
        return _part(
            FAILING,
            f"credentials refused ({a.last_error or credentials}): run 'account link' again",
        )
    if a.state is AccountState.BACKING_OFF:
        until = a.next_poll.isoformat(timespec="seconds")
        if a.retry_after:
            return _part(DEGRADED, f"parked by the cloud's Retry-After until {until}")
        return _part(
            DEGRADED, f"backing off until {until} after {a.failures} failure(s): {a.last_error}"
        )
    return _part(OK)


def database_health(
    reachable: bool, buffered: int, dropped: int, error: str | None
) -> dict[str, Any]:
    if not reachable:
        return _part(
            FAILING, f"unreachable ({error or 'no answer'}): {buffered} readings wait in memory"
        )
    if dropped:
        return _part(DEGRADED, f"{dropped} buffered readings dropped since the start (buffer full)")
    if buffered:
        return _part(DEGRADED, f"{buffered} buffered readings not yet written back")
    return _part(OK)


def mqtt_health(mqtt: MqttHealth) -> dict[str, Any]:
    if not mqtt.connected:
        return _part(FAILING, f"not connected to {mqtt.broker}: {mqtt.last_error or mqtt.state}")
    if mqtt.states_dropped or mqtt.events_rejected:
        return _part(
            DEGRADED,
            f"{mqtt.states_dropped} states dropped and {mqtt.events_rejected} events refused "
            "since the start (the queue was full while the broker was slow or away)",
        )
    return _part(OK)


def journal_health(journal: JournalInfo | None) -> dict[str, Any]:
    if journal is None:
        return {"path": None, **_part(OK)}
    if journal.error is not None:
        part = _part(FAILING, journal.error)
    elif journal.pending:
        part = _part(DEGRADED, f"{journal.replayed} replayed readings wait for the database")
    else:
        part = _part(OK)
    return {
        "path": str(journal.path),
        **part,
        "saved_readings": journal.saved,
        "replayed_readings": journal.replayed,
    }


REJECTIONS_DEGRADE_S = 3600.0  # /health stays "degraded" this long after a refused poll


def health_report(
    *,
    now: datetime,
    started_at: datetime,
    database: Database,
    mqtt: MqttHealth,
    accounts: Mapping[int, AccountInfo],
    scheduled: Iterable[AccountSchedule],
    stats: Stats,
    buffer: ReadingBuffer[Any],
    pipeline_error: str | None,
    queued_jobs: int,
    rejections: Rejections,
    show_accounts: bool = False,
    last_progress: datetime | None = None,
    stuck: str | None = None,
    journal: JournalInfo | None = None,
    leases: Mapping[str, Any] | None = None,
) -> tuple[bool, dict[str, Any]]:
    """``GET /health``: healthy when the database answers and the broker is connected.

    Accounts are listed by user id; their labels (a name or an e-mail address) only
    when ``show_accounts`` (``http.show_accounts``) asks for them.
    """
    reachable = database.ping()
    pool = database.pool_status()
    rows = [
        {
            "user_id": a.key,
            **(
                {"label": accounts[a.key].label if a.key in accounts else None}
                if show_accounts
                else {}
            ),
            "state": a.state.value,
            "credentials": accounts[a.key].credentials if a.key in accounts else None,
            "mode": "active" if a.active else "idle",
            "last_success": a.last_success,
            "last_error": a.last_error,
            "last_error_at": a.last_error_at,
            "consecutive_failures": a.failures,
            "next_poll": None if a.state is AccountState.PARKED else a.next_poll,
            **account_health(a, accounts[a.key].credentials if a.key in accounts else None),
        }
        for a in sorted(scheduled, key=lambda a: a.key)
    ]
    latencies = sorted(stats.latencies_ms)
    healthy = reachable and mqtt.connected
    # Rows refused for good within the hour: data is being lost, someone should look.
    refusing = rejections.last_at is not None and (
        (now - rejections.last_at).total_seconds() < REJECTIONS_DEGRADE_S
    )
    if stuck is not None:
        pipeline = _part(FAILING, stuck)
    elif refusing:
        pipeline = _part(
            DEGRADED,
            f"{rejections.readings} readings refused by the database; last: {rejections.last}",
        )
    else:
        pipeline = _part(OK)
    journal_part = journal_health(journal)
    body = {
        "status": "ok"
        if healthy
        and not refusing
        and all(a["state"] == "ok" for a in rows)
        and journal_part["health"] == OK
        else ("degraded" if healthy else "unhealthy"),
        "version": __version__,
        "uptime_seconds": round((now - started_at).total_seconds(), 1),
        "time": now,
        "database": {
            "reachable": reachable,
            "dialect": database.dialect,
            "url": safe_url(database.url),
            "pool": pool.as_dict(),
            "buffered_readings": len(buffer),
            "dropped_readings": buffer.dropped,
            "last_error": pipeline_error,
            **database_health(reachable, len(buffer), buffer.dropped, pipeline_error),
        },
        "mqtt": {**mqtt.as_dict(), **mqtt_health(mqtt)},
        "accounts": rows,
        "pipeline": {
            "polls": stats.polls,
            "readings": stats.readings,
            "alert_firings": stats.firings,
            "errors": stats.pipeline_errors,
            "queued_jobs": queued_jobs,
            "rejected_polls": rejections.polls,
            "rejected_readings": rejections.readings,
            "claimed_devices": rejections.claimed,  # polled, but another user's: not stored
            "last_rejection": rejections.last,
            "last_rejection_at": rejections.last_at,
            "poll_to_publish_ms_p50": percentile(latencies, 0.5),
            "poll_to_publish_ms_p99": percentile(latencies, 0.99),
            "last_progress": last_progress,
            **pipeline,
        },
        "journal": journal_part,
        "leases": dict(leases) if leases is not None else {"enabled": False, "held": None},
    }
    return healthy, body


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile of sorted ``values`` (nearest rank), rounded to 0.01; None if empty."""
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))], 2)
