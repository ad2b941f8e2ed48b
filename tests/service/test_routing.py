"""Replica routing (service/engine/routing.py) as plain functions: adapters stay on one replica,
move only when their replica leaves, spill only past the load bound; base-model requests go to the
least busy replica."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from service.engine.routing import Router, rendezvous_order


@dataclass(eq=False)
class Stub:
    key: str
    in_flight: int = 0


def _replicas(n: int) -> list[Stub]:
    return [Stub(f"managed-{i}") for i in range(n)]


ADAPTERS = [f"ft:base:org-{i}::job-{i:04d}" for i in range(400)]


def test_each_adapter_has_one_replica_and_they_spread_evenly() -> None:
    replicas, router = _replicas(4), Router()
    first = {name: router.choose(replicas, name) for name in ADAPTERS}
    assert all(router.choose(replicas, name) is first[name] for name in ADAPTERS)  # stable
    shares = Counter(r.key for r in first.values())
    assert len(shares) == 4 and min(shares.values()) > 60, shares  # 100 each on average


def test_a_replica_leaving_moves_only_its_own_adapters() -> None:
    replicas, router = _replicas(4), Router()
    before = {name: router.choose(replicas, name) for name in ADAPTERS}
    gone = replicas[2]
    after = {name: router.choose([r for r in replicas if r is not gone], name) for name in ADAPTERS}
    moved = [name for name in ADAPTERS if after[name] is not before[name]]
    assert moved and all(before[name] is gone for name in moved)
    # It rejoins: every adapter goes back where it was.
    assert all(router.choose(replicas, name) is before[name] for name in ADAPTERS)


def test_the_ranking_depends_on_keys_not_on_list_order() -> None:
    replicas = _replicas(5)
    assert [r.key for r in rendezvous_order("x", replicas)] == [
        r.key for r in rendezvous_order("x", list(reversed(replicas)))
    ]


def test_a_busy_replica_keeps_its_adapter_below_the_bound_and_spills_past_it() -> None:
    replicas, router = _replicas(2), Router(load_factor=1.25, min_in_flight=8)
    name = ADAPTERS[0]
    preferred, other = rendezvous_order(name, replicas)
    preferred.in_flight = 7  # below min_in_flight: a quiet service never spreads an adapter
    assert router.choose(replicas, name) is preferred
    preferred.in_flight = 20  # mean with this request 10.5: bound 14
    assert router.choose(replicas, name) is other
    other.in_flight = 30  # both past the bound: the least busy
    assert router.saturation(replicas) == 32
    assert router.choose(replicas, name) is preferred


def test_base_model_requests_go_to_the_least_busy_replica() -> None:
    replicas = _replicas(3)
    replicas[0].in_flight, replicas[1].in_flight, replicas[2].in_flight = 5, 2, 9
    assert Router().choose(replicas, None) is replicas[1]


def test_round_robin_ignores_adapters() -> None:
    replicas, router = _replicas(3), Router("round_robin")
    assert [router.choose(replicas, ADAPTERS[0]).key for _ in range(4)] == [
        "managed-0",
        "managed-1",
        "managed-2",
        "managed-0",
    ]


def test_no_replica_is_an_error() -> None:
    with pytest.raises(ValueError):
        Router().choose([], None)
