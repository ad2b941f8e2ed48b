"""fair_order: round-robin across organizations, FIFO within one."""

from __future__ import annotations

from service.jobs.fairness import QueuedJob, fair_order


def _jobs(org: str, count: int, first_created_at: int) -> list[QueuedJob]:
    return [QueuedJob(f"{org}-{i}", org, first_created_at + i) for i in range(count)]


def test_a_single_job_comes_second_at_worst_behind_twenty_older_ones() -> None:
    queued = _jobs("busy", 20, first_created_at=0) + _jobs("small", 1, first_created_at=100)
    assert fair_order(queued, {}).index("small-0") <= 1
    # Later passes: busy has one running, or just had its turn: small goes first.
    assert fair_order(queued, {"busy": 1})[0] == "small-0"
    assert fair_order(queued[1:], {}, {"busy": 50.0})[0] == "small-0"


def test_organizations_alternate_and_each_keeps_fifo_order() -> None:
    queued = _jobs("a", 3, first_created_at=0) + _jobs("b", 3, first_created_at=10)
    assert fair_order(list(reversed(queued)), {}) == ["a-0", "b-0", "a-1", "b-1", "a-2", "b-2"]


def test_fewest_running_goes_first_then_longest_since_its_turn() -> None:
    queued = _jobs("a", 1, 0) + _jobs("b", 1, 1) + _jobs("c", 1, 2)
    assert fair_order(queued, {"a": 2, "b": 1}) == ["c-0", "b-0", "a-0"]
    # Equal running counts: whose turn came longest ago; never had one comes before all.
    assert fair_order(queued, {}, {"a": 30.0, "b": 10.0}) == ["c-0", "b-0", "a-0"]


def test_empty_queue() -> None:
    assert fair_order([], {"a": 1}) == []
