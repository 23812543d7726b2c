"""When each linked account is polled next (pure: the clock and the randomness are injected).

Fast while a cook is going on, slow when idle, never closer than the minimum;
after an error, what the one retry policy (:class:`RetryPolicy`) says: capped
exponential back-off with jitter, or what the cloud's Retry-After asked for, up
to a cap; a refusal that retrying cannot fix (bad credentials) parks the
account until its credentials change.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from grillstats_bridge.config import PollingConfig
from grillstats_bridge.domain import Poll, Unit, convert_temperature
from grillstats_bridge.thermoworks.errors import RetryPolicy, Wait

# The first retry after a transient error waits about this long (then 2x, 4x... up to
# max_backoff, never less than min_interval): five 503s in a row cost under two minutes.
ERROR_BASE_S = 3.0


def retry_policy(polling: PollingConfig) -> RetryPolicy:
    """The one retry policy, with the configured bounds."""
    return RetryPolicy(
        base=ERROR_BASE_S,
        maximum=polling.max_backoff,
        long=polling.long_backoff,
        floor=polling.min_interval,
        retry_after_cap=polling.max_retry_after,
    )


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
    retry_after: bool = False  # waiting because the cloud said how long (Retry-After)


class Scheduler:
    def __init__(self, polling: PollingConfig, rng: random.Random | None = None) -> None:
        self.polling = polling
        self.policy = retry_policy(polling)
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
        a.retry_after = False
        # Keep the cadence from the poll's start, but never closer than min_interval to now.
        nxt = started + timedelta(seconds=self.interval(active))
        a.next_poll = max(nxt, now + timedelta(seconds=self.polling.min_interval))

    def failed(self, key: int, now: datetime, error: BaseException, reason: str) -> Wait:
        """Record an error; returns the policy's wait (``seconds`` None: parked)."""
        a = self.accounts[key]
        a.running = False
        a.failures += 1
        a.last_error, a.last_error_at = reason, now
        wait = self.policy.wait(error, a.failures, self._rng.random)
        a.retry_after = getattr(error, "retry_after", None) is not None
        if wait.seconds is None:
            a.state = AccountState.PARKED
            return wait
        a.state = AccountState.BACKING_OFF
        a.next_poll = now + timedelta(seconds=wait.seconds)
        return wait


class Activity:
    """Whether a poll shows a cook going on: a probe is hot, or moving fast."""

    def __init__(self) -> None:
        self._last_f: dict[tuple[str, int], float] = {}  # (serial, channel) -> last value, in F

    def active(self, poll: Poll, polling: PollingConfig) -> bool:
        active = False
        for device in poll.devices:
            for probe in device.probes:
                if not probe.connected or probe.value is None or not probe.unit.is_temperature:
                    continue
                key = (device.serial, probe.channel)
                value_f = convert_temperature(probe.value, probe.unit, Unit.FAHRENHEIT)
                previous = self._last_f.get(key)
                self._last_f[key] = value_f
                if value_f >= polling.hot_temperature or (
                    previous is not None and abs(value_f - previous) >= polling.change_threshold
                ):
                    active = True
        return active
