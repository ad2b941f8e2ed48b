"""What grading needs from its host: the gateway and the trainer each build a `GradingContext`.

- `models`: calls a served model for score_model and label_model graders (the gateway: through its
  own engines, for the calling organization's models; a reinforcement job's trainer: through the
  gateway's chat completions, trainer/gateway_models.py). None: model graders are refused.
- `embed`: an embedding function for the `cosine` metric. None: cosine is refused.
- `sandbox`: runs python graders (trainer/graders/sandbox.py). None: python graders are refused.
- `executor`: where CPU-bound metrics run, off the event loop and off the default thread pool, so a
  flood of slow metrics cannot starve the host's other blocking work.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from trainer.graders.results import TokenUsage
from trainer.graders.sandbox import Sandbox

Embedder = Callable[[list[str]], Awaitable[list[list[float]]]]


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion for a model grader, in OpenAI's chat shape."""

    messages: list[dict[str, Any]]
    response_format: dict[str, Any] | None = None
    sampling: dict[str, Any] = field(default_factory=dict)  # temperature, top_p, seed, max_completion_tokens


@dataclass(frozen=True)
class ChatReply:
    text: str | None
    refusal: str | None = None
    usage: TokenUsage = field(default_factory=TokenUsage)


@functools.cache
def shared_executor() -> Executor:
    """Two threads for CPU-bound metrics, shared by contexts that bring none of their own."""
    return ThreadPoolExecutor(2, thread_name_prefix="grading")


class ModelCallError(Exception):
    """The model could not be called, or answered with an error (the message is shown to the user)."""


class ModelCaller(Protocol):
    def knows(self, model: str) -> bool:
        """Whether `model` can be called (may block: the gateway asks its database)."""
        ...

    async def chat(self, model: str, request: ChatRequest) -> ChatReply:
        """The model's reply; ModelCallError when there is none."""
        ...


@dataclass
class GradingContext:
    models: ModelCaller | None = None
    embed: Embedder | None = None
    sandbox: Sandbox | None = None
    executor: Executor = field(default_factory=lambda: shared_executor())


def chat_reply(payload: Mapping[str, Any]) -> ChatReply:
    """The reply in a chat completion's JSON (OpenAI's shape); ModelCallError when it has none."""
    try:
        message = _object(payload["choices"][0]["message"])
    except (KeyError, IndexError, TypeError):
        raise ModelCallError("The model's answer has no message.") from None
    usage = _object(payload.get("usage"))
    details = _object(usage.get("prompt_tokens_details"))
    return ChatReply(
        text=message.get("content") if isinstance(message.get("content"), str) else None,
        refusal=message.get("refusal") if isinstance(message.get("refusal"), str) else None,
        usage=TokenUsage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int(details.get("cached_tokens") or 0),
        ),
    )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
