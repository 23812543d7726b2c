"""The schedule holds due polls back while the pipeline thread has too much waiting."""

from __future__ import annotations

from grillstats_bridge.bridge.daemon import MAX_POLL_BACKLOG
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
