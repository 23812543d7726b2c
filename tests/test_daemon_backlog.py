"""The schedule holds due polls back while the pipeline thread has too much waiting."""

from __future__ import annotations

from datetime import timedelta

from grillstats_bridge.bridge.daemon import MAX_POLL_BACKLOG
from grillstats_bridge.bridge.scheduler import AccountSchedule
from tests.fixtures.bridge import MakeRig


def test_due_accounts_wait_while_the_pipeline_is_behind(make_rig: MakeRig) -> None:
    rig = make_rig("brisket")
    bridge = rig.bridge
    ran: list[int] = []
    for n in range(MAX_POLL_BACKLOG):
        bridge.submit(lambda n=n: ran.append(n))  # type: ignore[misc]
    rig.cloud.clock.set(bridge.scheduler.accounts[rig.user_id].next_poll)
    assert bridge.scheduler.due(rig.now)  # the account's first poll is due
    assert bridge._schedule(rig.now) is False
    assert bridge._jobs.qsize() == 0  # no poll started: it would only wait in memory
    bridge.work.drain()
    assert ran == list(range(MAX_POLL_BACKLOG))
    assert bridge._schedule(rig.now) is True
    assert bridge._jobs.get_nowait() == rig.user_id
    assert bridge.scheduler.accounts[rig.user_id].running


def test_no_more_polls_start_than_the_backlog_holds(make_rig: MakeRig) -> None:
    """Many accounts due at once (a start with a thousand): the most overdue are let in."""
    rig = make_rig("brisket")
    bridge = rig.bridge
    now = rig.now
    for key in range(10_000, 10_000 + 2 * MAX_POLL_BACKLOG):  # not linked: never polled here
        bridge.scheduler.accounts[key] = AccountSchedule(key, now - timedelta(seconds=key))
    bridge._periodic(now)  # its housekeeping jobs are queued first: they count as waiting
    waiting = bridge.work.qsize()
    assert bridge._schedule(now) is False  # some were held back
    handed = [bridge._jobs.get_nowait() for _ in range(bridge._jobs.qsize())]
    assert len(handed) == MAX_POLL_BACKLOG - waiting
    assert set(handed) <= {key for key, a in bridge.scheduler.accounts.items() if a.running}
    overdue = sorted(bridge.scheduler.accounts.values(), key=lambda a: a.next_poll)
    assert handed == [a.key for a in overdue[: len(handed)]]
    assert bridge._schedule(now) is False  # they still run: nothing more starts
    assert bridge._jobs.qsize() == 0
