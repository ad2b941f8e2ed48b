"""Which queued job starts next: round-robin across organizations instead of first-in, first-out.

With FIFO, an organization that queues 1,000 jobs holds the trainers until all of them ran. Here the
organization with the fewest running jobs goes first, ties broken by whose turn came longest ago
(an organization that never had a turn first), then by whose oldest queued job waited longest;
within an organization, jobs keep their FIFO order. A pure function: the scheduler supplies the
running counts and the time each organization last had a job started.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class QueuedJob:
    job_id: str
    organization_id: str
    created_at: int


def fair_order(
    queued: Iterable[QueuedJob],
    running_by_org: Mapping[str, int],
    last_started_by_org: Mapping[str, float] | None = None,
) -> list[str]:
    """The queued job ids in the order they should start, as if each were started in turn: every
    pick counts as a running job and as the newest turn of its organization."""
    waiting: dict[str, deque[QueuedJob]] = defaultdict(deque)
    for job in sorted(queued, key=lambda j: (j.created_at, j.job_id)):
        waiting[job.organization_id].append(job)
    running = {org: running_by_org.get(org, 0) for org in waiting}
    last_turn = {org: (last_started_by_org or {}).get(org, float("-inf")) for org in waiting}
    # Turns taken in this ordering come after every real one.
    next_turn = max((t for t in last_turn.values() if t != float("-inf")), default=0.0) + 1.0

    order: list[str] = []
    while waiting:
        org = min(waiting, key=lambda o: (running[o], last_turn[o], waiting[o][0].created_at, o))
        order.append(waiting[org].popleft().job_id)
        if not waiting[org]:
            del waiting[org]
        running[org] += 1
        last_turn[org] = next_turn
        next_turn += 1.0
    return order
