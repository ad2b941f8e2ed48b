"""Per-organization limits on chat and text completions (issue 9), and prefix-cache isolation.

- Request caps: `n`, `best_of`, `max_tokens` and `max_completion_tokens` above the configured
  maximum are refused with a 400 naming the parameter (not clamped: a caller asking for 50 choices
  should learn it gets at most 8, not silently receive fewer). An omitted `max_tokens` is left to
  the engine, which bounds it by the model's context length.
- Concurrency: at most `max_concurrent` requests of one organization in flight; one more is a 429
  `rate_limit_exceeded` with `retry-after`. A slot is held until the engine is done with the
  request (the end of its stream, or the client going away: see serving.ServingLease).
- `cache_salt`: vLLM shares its prefix cache across requests, so a request that reuses another's
  prefix returns faster, a timing probe of other organizations' prompts. Each organization's
  requests get their own salt (a caller's own value is replaced), so caches are only shared within
  an organization.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from service.config import Settings
from service.errors import InvalidRequest, RateLimited


@dataclass(frozen=True)
class ChatCaps:
    max_concurrent: int
    max_n: int
    max_tokens: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatCaps:
        return cls(
            max_concurrent=settings.chat_max_concurrent_per_org,
            max_n=settings.chat_max_n,
            max_tokens=settings.chat_max_tokens,
        )


class ConcurrencySlot:
    """One request's place in its organization's concurrency limit; `release` is idempotent, so
    every path that ends a request may call it."""

    def __init__(self, limits: ChatLimits, org_id: str) -> None:
        self._limits = limits
        self._org_id = org_id
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._limits._leave(self._org_id)


class ChatLimits:
    """One per app. Used from the event loop only (handlers and stream ends), so plain counters."""

    def __init__(self, caps: ChatCaps | None) -> None:
        self.caps = caps  # None: no caps (cache salts still apply)
        self._in_flight: dict[str, int] = {}
        # Salts differ per server start: the engine's cache is only an optimization.
        self._salt_key = secrets.token_bytes(32)

    def in_flight(self, org_id: str) -> int:
        return self._in_flight.get(org_id, 0)

    def check_request(self, body: dict[str, Any]) -> None:
        """A 400 naming the first parameter over its cap."""
        if self.caps is None:
            return
        for param, most in (
            ("n", self.caps.max_n),
            ("best_of", self.caps.max_n),
            ("max_tokens", self.caps.max_tokens),
            ("max_completion_tokens", self.caps.max_tokens),
        ):
            value = body.get(param)
            if isinstance(value, int) and not isinstance(value, bool) and value > most:
                raise InvalidRequest(
                    f"Invalid '{param}': {value} is more than this server allows ({most}).",
                    param=param,
                    code="integer_above_max_value",
                )

    def cache_salt(self, org_id: str) -> str:
        # Hex: within vLLM's rules for salts (at most 128 characters, no '@', '/', '\\').
        return hmac.new(self._salt_key, org_id.encode(), hashlib.sha256).hexdigest()

    def enter(self, org_id: str) -> ConcurrencySlot:
        count = self.in_flight(org_id)
        if self.caps is not None and count >= self.caps.max_concurrent:
            raise RateLimited(
                f"Your organization has {count} completion requests in progress, the most allowed "
                f"at once is {self.caps.max_concurrent}. Retry when one has finished."
            )
        self._in_flight[org_id] = count + 1
        return ConcurrencySlot(self, org_id)

    def _leave(self, org_id: str) -> None:
        left = self._in_flight.get(org_id, 0) - 1
        if left > 0:
            self._in_flight[org_id] = left
        else:
            self._in_flight.pop(org_id, None)
