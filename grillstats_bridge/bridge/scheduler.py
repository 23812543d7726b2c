"""When each linked account is polled next (pure: the clock and the randomness are injected).

Fast while a cook is going on, slow when idle, never closer than the minimum;
after an error, capped exponential back-off with jitter, or exactly what the
cloud's Retry-After asked for; a refusal that retrying cannot fix (bad
credentials) parks the account until its credentials change.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from grillstats_bridge.config import PollingConfig

# The first retry after an error waits this long (then 2x, 4x... up to max_backoff).
ERROR_BASE_S = 30.0


class Retry(StrEnum):
    """What an error asks of the scheduler (the cloud client's errors map onto these)."""

    BACKOFF = "backoff"  # unavailable, timed out, malformed: exponential back-off with jitter
    LONG_BACKOFF = "long_backoff"  # too many attempts: wait max_backoff
    AFTER = "after"  # rate limited: wait exactly what Retry-After said (at least min_interval)
    NEVER = "never"  # bad credentials, disabled account: park until the credentials change


class AccountState(StrEnum):
    OK = "ok"
    BACKING_OFF = "backing_off"
    PARKED = "parked"


@dataclass
class AccountSchedule:
    key: int
    next_poll: datetime
    state: AccountState = AccountState.OK
    failures: int = 0
    active: bool = False
    running: bool = False
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None


class Scheduler:
    def __init__(self, polling: PollingConfig, rng: random.Random | None = None) -> None:
        self.polling = polling
        self._rng = rng or random.Random()
        self.accounts: dict[int, AccountSchedule] = {}

    def add(self, key: int, now: datetime) -> AccountSchedule:
        """Schedule an account (polled at once, with a little jitter to spread a crowd)."""
        if key not in self.accounts:
            spread = self._rng.uniform(0, min(self.polling.min_interval, 5.0))
            self.accounts[key] = AccountSchedule(key, now + timedelta(seconds=spread))
        return self.accounts[key]

    def remove(self, key: int) -> None:
        self.accounts.pop(key, None)

    def unpark(self, key: int, now: datetime) -> None:
        """The credentials changed: poll again at once."""
        account = self.accounts.get(key)
        if account is not None and account.state is AccountState.PARKED:
            account.state, account.failures, account.next_poll = AccountState.OK, 0, now

    def due(self, now: datetime) -> list[int]:
        """Accounts whose time has come and that are not being polled right now."""
        return [
            a.key
            for a in sorted(self.accounts.values(), key=lambda a: a.next_poll)
            if not a.running and a.state is not AccountState.PARKED and a.next_poll <= now
        ]

    def next_wakeup(self) -> datetime | None:
        waiting = [
            a.next_poll
            for a in self.accounts.values()
            if not a.running and a.state is not AccountState.PARKED
        ]
        return min(waiting, default=None)

    def interval(self, active: bool) -> float:
        p = self.polling
        return max(p.min_interval, p.active_interval if active else p.idle_interval)

    def succeeded(self, key: int, started: datetime, now: datetime, active: bool) -> None:
        a = self.accounts[key]
        a.running = False
        a.state, a.failures, a.active, a.last_success = AccountState.OK, 0, active, now
        # Keep the cadence from the poll's start, but never closer than min_interval to now.
        nxt = started + timedelta(seconds=self.interval(active))
        a.next_poll = max(nxt, now + timedelta(seconds=self.polling.min_interval))

    def failed(
        self,
        key: int,
        now: datetime,
        retry: Retry,
        reason: str,
        retry_after: float | None = None,
    ) -> float | None:
        """Record an error; returns the seconds until the next attempt (None: parked)."""
        a = self.accounts[key]
        a.running = False
        a.failures += 1
        a.last_error, a.last_error_at = reason, now
        p = self.polling
        if retry is Retry.NEVER:
            a.state = AccountState.PARKED
            return None
        if retry is Retry.AFTER and retry_after is not None:
            delay = max(retry_after, p.min_interval)
        elif retry is Retry.LONG_BACKOFF:
            delay = p.max_backoff
        else:
            ceiling = min(p.max_backoff, ERROR_BASE_S * 2 ** min(a.failures - 1, 20))
            # "Equal jitter": at least half the step, so that back-off always grows.
            delay = max(p.min_interval, self._rng.uniform(ceiling / 2, ceiling))
        a.state = AccountState.BACKING_OFF
        a.next_poll = now + timedelta(seconds=delay)
        return delay
