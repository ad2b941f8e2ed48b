"""Chat completions the gateway asks for itself (a finished job's evaluation, service/jobs/
evaluator.py), sent straight to one of a base model's replicas: no catalog look-up (the job's model
is not listed before the job succeeds) and no organization concurrency slot, but the routing, the
in-flight count and the adapter hold of a served request (serving.py), so the adapter is not evicted
while its answer is generated."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from service.engine.client import EngineStreamBroken
from service.engine.fleet import ServedBase
from service.engine.replica import Replica
from service.errors import EngineUnreachable, ServiceError

logger = logging.getLogger(__name__)
PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Adapter:
    name: str  # the fine-tuned model's name, which the engine loads it as
    location: str  # where it is stored (a folder or s3://...)


class EngineTrouble(ServiceError):
    """The engine failed (an error status of its own, a broken connection): not the prompt's fault."""


async def chat_text(served: ServedBase, body: dict[str, Any], adapter: Adapter | None) -> str | None:
    """The text of the engine's answer to a non-streamed chat `body` (its `model` already set); None
    when the engine refuses the request (a 4xx: a prompt too long for it, say). A replica that cannot
    be reached leaves rotation and the next one is tried; EngineUnreachable once none is left,
    AdapterLoadError when the adapter cannot be loaded, EngineTrouble for a failing engine."""
    tried: set[Replica] = set()
    while True:
        replica = served.choose(adapter.name if adapter else None, frozenset(tried))
        try:
            return await _ask(replica, body, adapter)
        except EngineUnreachable:
            replica.suspect()
            tried.add(replica)


async def _ask(replica: Replica, body: dict[str, Any], adapter: Adapter | None) -> str | None:
    if adapter is not None:
        await replica.adapters.acquire(adapter.name, adapter.location)
    replica.in_flight += 1
    try:
        response = await replica.client.send(PATH, body)
        try:
            raw = await response.read()
        finally:
            response.close()  # before the end (cancelled): the engine stops generating
    except EngineStreamBroken as exc:  # its words name the engine's address: the log has them
        logger.warning("An engine's answer broke off: %s", exc)
        raise EngineTrouble("the engine's connection broke") from exc
    finally:
        replica.in_flight -= 1
        if adapter is not None:
            replica.adapters.release(adapter.name)
    if 400 <= response.status_code < 500:
        return None
    if response.status_code != 200:
        raise EngineTrouble(f"the engine answered with status {response.status_code}")
    return _message_text(raw)


def _message_text(raw: bytes) -> str:
    try:
        content = json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise EngineTrouble("the engine's answer has no message") from None
    return content if isinstance(content, str) else ""
