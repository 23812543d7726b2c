"""The pipeline benchmark's figures for several processes: one bridge's, added up."""

from __future__ import annotations

from typing import Any

from benchmarks.pipeline import arrivals, merge


def child(accounts: list[int], readings: int, seconds: float, vmhwm_kb: int) -> dict[str, Any]:
    return {
        "polls": [{"account": a, "readings": readings // len(accounts)} for a in accounts],
        "window": {
            "seconds": seconds,
            "processed_readings": readings,
            "offered_readings": readings,
            "transactions": 2,
            "polls_per_transaction": len(accounts) / 2,
            "cpu_seconds": seconds / 2,
            "cpu_by_thread": {"pipeline": seconds / 4, "poll": seconds / 4},
            "queued_at_end": 1,
        },
        "vmhwm_kb": vmhwm_kb,
        "rss_anon_kb": vmhwm_kb - 100,
        "rss_file_kb": 100,
        "rss": [[10.0, vmhwm_kb]],
        "rss_stages_kb": {"imported": 70_000, "constructed": 76_000},
        "errors": 0,
        "states_dropped": 0,
        "resent": 0,
    }


def test_each_account_in_one_process_adds_up() -> None:
    merged = merge([child([1, 3], 2000, 20.0, 80_000), child([2, 4], 1000, 19.0, 90_000)])
    window = merged["window"]
    rate = window["processed_readings"] / window["seconds"]
    assert abs(rate - (2000 / 20.0 + 1000 / 19.0)) < 1e-9
    assert merged["vmhwm_kb_per_process"] == [80_000, 90_000] and merged["vmhwm_kb"] == 90_000
    assert merged["several_polled"] == 0 and merged["accounts_polled"] == 4
    assert merged["states_dropped"] == merged["resent"] == [0, 0]  # listed per process
    assert len(merged["polls"]) == 4 and window["queued_at_end"] == 2
    assert merged["rss_stages_kb"] == {"imported": 70_000, "constructed": 76_000}  # printed


def test_an_account_polled_by_two_processes_is_counted() -> None:
    merged = merge([child([1, 2], 2000, 20.0, 80_000), child([2, 3], 2000, 20.0, 80_000)])
    assert merged["several_polled"] == 1 and merged["accounts_polled"] == 3


def test_one_process_is_its_own_figures() -> None:
    one = child([1], 100, 20.0, 70_000)
    merged = merge([one])
    assert merged["window"] == one["window"] and merged["vmhwm_kb_per_process"] == [70_000]


def test_a_superseded_state_is_not_matched_to_the_next_identical_payload() -> None:
    """A state the outbox replaced never arrives; the same payload handed again a minute
    later (a probe back at the same figures) is that later poll's, not a 60 s delay."""
    polls = [
        {"available": 10.0, "handed": 10.01, "published": [("t/a", "1"), ("t/b", "x")]},
        {"available": 11.0, "handed": 11.01, "published": [("t/a", "2")]},
        {"available": 70.0, "handed": 70.01, "published": [("t/a", "1")]},
    ]
    received = {("t/a", "2"): [11.05], ("t/a", "1"): [70.03], ("t/b", "x"): [10.02]}
    arrived, missing = arrivals(polls, received)
    assert missing == 0 and [round(a, 3) for a in arrived] == [0.02, 0.05, 0.03]
    alone = [dict(polls[0], published=[("t/a", "1")]), polls[2]]
    arrived, missing = arrivals(alone, received)
    assert missing == 1 and [round(a, 3) for a in arrived] == [0.03]
