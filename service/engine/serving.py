"""Serving one completion request: from a model name to the engine's answer, within the caller's
organization's limits (service/engine/limits.py).

`complete` resolves the model, picks one of its base model's engine replicas (routing.py), takes a
place in the organization's concurrency limit and holds the model's adapter on that replica (never
evicted while a request uses it), then hands all of it, as one `ServingLease`, to `proxy.forward`,
which releases it when the engine is done.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from fastapi.responses import Response

from service.engine.adapters import AdapterRegistry
from service.engine.fleet import EngineFleet
from service.engine.limits import ChatLimits, ConcurrencySlot
from service.engine.named_tool import NamedToolCall
from service.engine.proxy import forward
from service.engine.replica import Replica
from service.errors import EngineUnreachable


class ServableModel(Protocol):
    """A model a caller may use (service/catalog.py's ServedModel)."""

    @property
    def name(self) -> str: ...
    @property
    def base(self) -> str: ...  # the base model, and so the engine, it runs on
    @property
    def adapter_path(self) -> str | None: ...  # its LoRA adapter; None for a base model


class ModelResolver(Protocol):
    """Finds a model by name for an organization, or raises NotFound (service/catalog.py)."""

    def resolve(self, org_id: str, name: str) -> ServableModel: ...

    def served_base(self, name: str) -> ServableModel | None:
        """The base model `name`, found without the database; None for any other name."""
        ...


class ServingLease:
    """What one request holds until the engine is done with it: its organization's concurrency
    slot, its place in the replica's in-flight count (routing reads it) and, for a fine-tuned
    model, its adapter. `release` is idempotent, so every path that ends a request may call it."""

    def __init__(self, slot: ConcurrencySlot, replica: Replica) -> None:
        self._slot = slot
        self._replica = replica
        self._adapter: tuple[AdapterRegistry, str] | None = None
        self._held = True
        replica.in_flight += 1

    def hold_adapter(self, adapters: AdapterRegistry, name: str) -> None:
        """Record an adapter already acquired (`adapters.acquire(name, ...)`), released with the rest."""
        self._adapter = (adapters, name)

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        self._replica.in_flight -= 1
        try:
            if self._adapter is not None:
                adapters, name = self._adapter
                adapters.release(name)
        finally:
            self._slot.release()


async def lease_for(limits: ChatLimits, org_id: str, replica: Replica, model: ServableModel) -> ServingLease:
    """A lease to run a request for `model` on `replica`: RateLimited over the organization's
    limit, AdapterLoadError when the engine cannot load the model's adapter, EngineUnreachable when
    it cannot be reached (nothing is held then)."""
    lease = ServingLease(limits.enter(org_id), replica)
    try:
        if model.adapter_path:
            await replica.adapters.acquire(model.name, model.adapter_path)
            lease.hold_adapter(replica.adapters, model.name)
    except BaseException:
        lease.release()
        raise
    return lease


async def complete(
    catalog: ModelResolver,
    fleet: EngineFleet,
    limits: ChatLimits,
    org_id: str,
    path: str,
    body: dict[str, Any],
) -> Response:
    """Serve a chat or text completion `body` (a JSON object with a string `model`) for `org_id` at
    the engine's `path`: its answer, streamed when `body["stream"]`.

    A replica that cannot be reached before the request reaches it (the engine died, its host is
    gone) leaves rotation and the request goes to the next one: nothing was generated yet, so only
    a stream already under way can fail (with an error event, proxy.py)."""
    limits.check_request(body)
    # The organization's own prefix cache (a caller's salt is replaced: see limits.py).
    body["cache_salt"] = limits.cache_salt(org_id)
    model = catalog.served_base(body["model"])
    if model is None:
        # Other models are in the database: in a thread, so a slow query does not stall every stream.
        model = await asyncio.to_thread(catalog.resolve, org_id, body["model"])
    base = fleet.get(model.base)
    named = NamedToolCall.rewrite(body) if path == "/v1/chat/completions" else None
    adapter = model.name if model.adapter_path else None
    tried: set[Replica] = set()
    while True:
        replica = base.choose(adapter, frozenset(tried))  # EngineUnreachable once none is left
        try:
            lease = await lease_for(limits, org_id, replica, model)
            return await forward(replica.client, path, body, lease, named)
        except EngineUnreachable:
            replica.suspect()
            tried.add(replica)
