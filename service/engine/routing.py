"""Which replica of a base model serves a request.

A request for an adapter goes to the replica that rendezvous (highest-random-weight) hashing ranks
first for the adapter's name among the replicas in rotation, so an adapter is loaded on one replica
and stays there; when a replica leaves or joins, only the adapters it ranks first move. Every
gateway computes the same ranking from the replicas' keys, so several gateways agree.

Bounded loads: a replica already running at least max(min_in_flight, load_factor x the mean per
replica) requests is saturated, and the request goes to the next replica in the adapter's ranking
(consistent hashing with bounded loads, Mirrokni et al. 2018): a hot adapter spills onto a second
replica instead of queueing behind one, while a quiet service never spreads an adapter at all.
A base-model request has no adapter to keep together: it goes to the least busy replica.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from typing import Literal, Protocol, TypeVar


class Routable(Protocol):
    @property
    def key(self) -> str: ...  # stable across restarts and gateways
    @property
    def in_flight(self) -> int: ...


R = TypeVar("R", bound=Routable)


def rendezvous_order(name: str, replicas: Sequence[R]) -> list[R]:
    """`replicas` by preference for `name`, most preferred first."""

    def weight(replica: R) -> bytes:
        return hashlib.blake2b(f"{replica.key}\0{name}".encode(), digest_size=8).digest()

    return sorted(replicas, key=weight, reverse=True)


class Router:
    def __init__(
        self,
        policy: Literal["affinity", "round_robin"] = "affinity",
        load_factor: float = 1.25,
        min_in_flight: int = 8,
    ) -> None:
        self.policy = policy
        self.load_factor = load_factor
        self.min_in_flight = min_in_flight
        self._turn = itertools.count()

    def choose(self, replicas: Sequence[R], adapter: str | None) -> R:
        """The replica for a request for `adapter` (None: the base model); `replicas` are those in
        rotation, at least one."""
        if not replicas:
            raise ValueError("no replica to choose from")
        if self.policy == "round_robin":
            return replicas[next(self._turn) % len(replicas)]
        if adapter is None:
            return min(replicas, key=lambda r: r.in_flight)
        cap = self.saturation(replicas)
        ranked = rendezvous_order(adapter, replicas)
        return next((r for r in ranked if r.in_flight < cap), min(ranked, key=lambda r: r.in_flight))

    def saturation(self, replicas: Sequence[Routable]) -> int:
        """In-flight requests from which a replica takes no more spilled-over work."""
        total = sum(r.in_flight for r in replicas) + 1  # this request included
        return max(self.min_in_flight, math.ceil(self.load_factor * total / len(replicas)))
