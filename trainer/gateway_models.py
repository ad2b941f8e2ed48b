"""The trainer's ModelCaller (trainer/graders/context.py): score_model and label_model graders call
the gateway's own POST /v1/chat/completions, with the job's grader token (trainer/spec.py's
ModelGraderAccess), so the same model names, organization, limits, adapters and engines apply as
for the organization's chat and the graders endpoints.

At most `max_concurrent` calls are in flight. A call the gateway turns away for now (429: the
organization's chat concurrency limit, 502-504, the connection) is tried again, after its
`retry-after` when given; any other failure is a ModelCallError, which scores the sample 0
(trainer/rewards.py). Messages reach the job's events: they name no address; the trainer's log does.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import httpx

from trainer.graders import ChatReply, ChatRequest, ModelCallError
from trainer.graders.context import chat_reply
from trainer.spec import ModelGraderAccess

logger = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({429, 502, 503, 504})
ATTEMPTS = 6
MAX_WAIT_S = 30.0
TIMEOUT_S = 300.0  # one reply, on a busy CPU engine included


class GatewayModels:
    def __init__(
        self, access: ModelGraderAccess, attempts: int = ATTEMPTS, first_wait_s: float = 0.5
    ) -> None:
        self.access = access
        self.attempts = attempts
        self.first_wait_s = first_wait_s
        # Per event loop: TRL awaits rewards on a loop of its own, tests on theirs.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None

    def knows(self, model: str) -> bool:
        # The gateway checked that the organization can use the model when the job was created (a
        # grader token may call nothing else); one deleted since fails each call, with its message.
        return True

    async def chat(self, model: str, request: ChatRequest) -> ChatReply:
        body: dict[str, Any] = {"model": model, "messages": request.messages, **request.sampling}
        if request.response_format is not None:
            body["response_format"] = request.response_format
        response = await self._post(body)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400 or not isinstance(payload, dict):
            raise ModelCallError(_failure(response.status_code, payload))
        return chat_reply(payload)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _client(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._http is None or self._slots is None or self._loop is not loop:
            self._loop = loop
            self._http = httpx.AsyncClient(
                base_url=self.access.gateway_url,
                headers={"authorization": f"Bearer {self.access.token}"},
                timeout=httpx.Timeout(TIMEOUT_S, connect=10.0),
                limits=httpx.Limits(max_connections=self.access.max_concurrent),
            )
            self._slots = asyncio.Semaphore(self.access.max_concurrent)
        return self._http, self._slots

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        """The gateway's answer, tried again while it is one to wait out (without holding a slot)."""
        http, slots = self._client()
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            try:
                async with slots:
                    response = await http.post("/v1/chat/completions", json=body)
            except httpx.TransportError as exc:
                logger.warning("Model grader call to %s failed: %r", self.access.gateway_url, exc)
                if last:
                    raise ModelCallError(
                        f"The server could not be reached to call the grader's model ({type(exc).__name__})."
                    ) from None
                await asyncio.sleep(self._backoff(attempt))
                continue
            if response.status_code not in RETRIED_STATUSES or last:
                return response
            wait = _retry_after(response)
            await asyncio.sleep(wait if wait is not None else self._backoff(attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _backoff(self, attempt: int) -> float:
        """Doubling waits with jitter, so that concurrent calls turned away together spread out."""
        return min(MAX_WAIT_S, self.first_wait_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return min(MAX_WAIT_S, max(0.0, seconds))


def _failure(status: int, payload: Any) -> str:
    """What the user reads in the job's events about a call that failed."""
    if status in (401, 403):
        return "The server refused the grader's model call: the job is no longer running."
    error = payload.get("error") if isinstance(payload, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message or f"The grader's model answered with status {status}.")
