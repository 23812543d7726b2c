"""The poll schedule: adaptive intervals, back-off with jitter, Retry-After, parking."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from grillstats_bridge.bridge.scheduler import ERROR_BASE_S, AccountState, Scheduler
from grillstats_bridge.config import PollingConfig
from grillstats_bridge.thermoworks.errors import (
    InvalidCredentials,
    RateLimited,
    TooManyAttempts,
    Unavailable,
)

UNAVAILABLE = Unavailable("503 UNAVAILABLE", status=503)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def sched(**kw: float) -> Scheduler:
    return Scheduler(PollingConfig(**kw), random.Random(7))  # type: ignore[arg-type]


def test_new_accounts_are_due_within_seconds() -> None:
    s = sched()
    s.add(1, T0)
    s.add(2, T0)
    assert s.due(T0 + timedelta(seconds=5)) == [1, 2] or s.due(T0 + timedelta(seconds=5)) == [2, 1]


def test_active_and_idle_intervals_from_poll_start() -> None:
    s = sched(active_interval=15, idle_interval=300, min_interval=5)
    s.add(1, T0)
    s.accounts[1].running = True
    s.succeeded(1, started=T0, now=T0 + timedelta(seconds=2), active=True)
    assert s.accounts[1].next_poll == T0 + timedelta(seconds=15)
    s.succeeded(1, started=T0, now=T0 + timedelta(seconds=2), active=False)
    assert s.accounts[1].next_poll == T0 + timedelta(seconds=300)


def test_never_closer_than_min_interval() -> None:
    s = sched(active_interval=15, idle_interval=300, min_interval=5)
    s.add(1, T0)
    # A poll that took 14 s: the next one is still at least 5 s away.
    s.succeeded(1, started=T0, now=T0 + timedelta(seconds=14), active=True)
    assert s.accounts[1].next_poll == T0 + timedelta(seconds=19)
    s2 = sched(active_interval=2, idle_interval=300, min_interval=5)
    assert s2.interval(active=True) == 5


def test_running_account_is_never_due_twice() -> None:
    s = sched()
    s.add(1, T0)
    s.accounts[1].running = True
    assert s.due(T0 + timedelta(hours=1)) == []
    assert s.next_wakeup() is None


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    s = sched(max_backoff=600, min_interval=5)
    s.add(1, T0)
    delays = [s.failed(1, T0, UNAVAILABLE, "503 UNAVAILABLE").seconds for _ in range(12)]
    assert all(d is not None for d in delays)
    values = [d for d in delays if d is not None]
    for n, d in enumerate(values, start=1):
        ceiling = min(600.0, ERROR_BASE_S * 2 ** (n - 1))
        assert max(5.0, ceiling / 2) <= d <= max(5.0, ceiling)  # never under min_interval
    assert values[-1] <= 600 and values[-1] >= 300
    assert s.accounts[1].state is AccountState.BACKING_OFF
    assert s.accounts[1].last_error == "503 UNAVAILABLE"
    # Two accounts failing together do not retry in lockstep.
    other = Scheduler(PollingConfig(max_backoff=600), random.Random(8))
    other.add(2, T0)
    assert [other.failed(2, T0, UNAVAILABLE, "x").seconds for _ in range(4)] != values[:4]


def test_retry_after_is_honoured() -> None:
    s = sched(min_interval=5)
    s.add(1, T0)
    assert s.failed(1, T0, RateLimited("429", retry_after=120), "429").seconds == 120
    assert s.accounts[1].next_poll == T0 + timedelta(seconds=120)
    assert s.failed(1, T0, RateLimited("429", retry_after=1), "429").seconds == 5


def test_retry_after_is_capped() -> None:
    s = sched(max_retry_after=600)
    s.add(1, T0)
    wait = s.failed(1, T0, RateLimited("429", retry_after=86400), "429")
    assert (wait.seconds, wait.capped_from) == (600, 86400)
    assert s.accounts[1].next_poll == T0 + timedelta(seconds=600)
    # no Retry-After at all: the ordinary back-off
    wait = s.failed(1, T0, RateLimited("429"), "429")
    assert wait.seconds is not None and wait.capped_from is None and 5 <= wait.seconds <= 6


def test_too_many_attempts_waits_long() -> None:
    s = sched(max_backoff=300, long_backoff=1800)
    s.add(1, T0)
    assert s.failed(1, T0, TooManyAttempts("x"), "TOO_MANY_ATTEMPTS_TRY_LATER").seconds == 1800


def test_five_transient_errors_in_a_row_cost_under_two_minutes() -> None:
    """A two-minute blip of 503s must not throw away a quarter of an hour of a cook."""
    for seed in range(50):
        s = Scheduler(PollingConfig(), random.Random(seed))  # the defaults
        s.add(1, T0)
        waited = sum(s.failed(1, T0, UNAVAILABLE, "503").seconds or 0 for _ in range(5))
        assert waited < 120, (seed, waited)


def test_bad_credentials_park_until_unparked() -> None:
    s = sched()
    s.add(1, T0)
    assert s.failed(1, T0, InvalidCredentials("x"), "INVALID_PASSWORD").seconds is None
    assert s.accounts[1].state is AccountState.PARKED
    assert s.due(T0 + timedelta(days=30)) == []
    s.unpark(1, T0 + timedelta(days=1))
    assert s.due(T0 + timedelta(days=1)) == [1]


def test_success_resets_failures() -> None:
    s = sched()
    s.add(1, T0)
    s.failed(1, T0, UNAVAILABLE, "x")
    s.failed(1, T0, UNAVAILABLE, "x")
    s.succeeded(1, T0, T0, active=False)
    assert (s.accounts[1].failures, s.accounts[1].state) == (0, AccountState.OK)
    assert s.failed(1, T0, UNAVAILABLE, "x").seconds == pytest.approx(
        s.accounts[1].next_poll.timestamp() - T0.timestamp()
    )
