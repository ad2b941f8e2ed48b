"""HTTP client of one vLLM engine: health, runtime LoRA loading, and request forwarding.

Forwarded requests, the hot path, go through aiohttp: its C HTTP parser and `iter_any` (whatever
bytes have arrived, several SSE events at once under load) cost the gateway about half the CPU per
relayed token that httpx's pure-Python h11 does (bench/serving.py). Everything else, a few calls
a minute, uses httpx.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx

from service.errors import EngineRejected, EngineUnreachable


class EngineClient:
    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        # False while a managed engine restarts: requests fail with EngineUnreachable meanwhile.
        self.available = True
        # No read timeout: generations and streams last as long as they last; the client may cancel.
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(None, connect=5.0))
        self._relay: aiohttp.ClientSession | None = None  # made on first use, inside the event loop
        self.use_api_key(api_key)

    def point_at(self, base_url: str, api_key: str | None) -> None:
        """Send to an engine at another address from now on (a Ray replica started again)."""
        self.base_url = base_url.rstrip("/")
        self.http.base_url = httpx.URL(self.base_url)
        self.use_api_key(api_key)

    def use_api_key(self, api_key: str | None) -> None:
        """The engine's key (vLLM `--api-key`), sent on every request from now on, forwarded ones
        included (service/engine/proxy.py sends through `self.http`)."""
        if api_key:
            self.http.headers["authorization"] = f"Bearer {api_key}"
        else:
            self.http.headers.pop("authorization", None)

    async def close(self) -> None:
        await self.http.aclose()
        if self._relay is not None:
            await self._relay.close()

    async def is_healthy(self) -> bool:
        try:
            response = await self.http.get("/health", timeout=5.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def accepts_key(self) -> bool:
        """Whether the engine takes our key (or needs none): vLLM guards /v1 with it, not /health."""
        try:
            response = await self.http.get("/v1/models", timeout=10.0)
        except httpx.HTTPError:
            return False
        return response.status_code != 401

    async def load_adapter(self, name: str, path: str) -> None:
        await self._post_admin("/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})

    async def unload_adapter(self, name: str) -> None:
        await self._post_admin("/v1/unload_lora_adapter", {"lora_name": name})

    async def _post_admin(self, path: str, payload: dict[str, Any]) -> None:
        try:
            response = await self.http.post(path, json=payload, timeout=120.0)
        except httpx.HTTPError as exc:
            raise EngineUnreachable(f"the engine at {self.base_url} is not reachable: {exc!r}") from exc
        if response.status_code != 200:
            raise EngineRejected(response.status_code, _json_or_text(response))

    async def send(self, path: str, body: dict[str, Any]) -> EngineResponse:
        """Send a request and return as soon as the engine's headers are in: the caller reads the
        body and must close the response (closing it before the end cancels the engine's work)."""
        if self._relay is None or self._relay.closed:
            # No read timeout: generations and streams last as long as they last. Idle connections
            # are dropped after 2 s, before vLLM's server (uvicorn: 5 s) closes them on its side.
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=5.0)
            connector = aiohttp.TCPConnector(keepalive_timeout=2.0, limit=0)
            self._relay = aiohttp.ClientSession(timeout=timeout, connector=connector)
        headers = {"content-type": "application/json"}
        if auth := self.http.headers.get("authorization"):
            headers["authorization"] = auth
        data = json.dumps(body).encode()
        try:
            try:
                response = await self._relay.post(self.base_url + path, data=data, headers=headers)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                # A kept-alive connection the engine closed as we reused it: nothing reached it.
                response = await self._relay.post(self.base_url + path, data=data, headers=headers)
        except (aiohttp.ClientError, OSError) as exc:
            raise EngineUnreachable(f"the engine at {self.base_url} is not reachable: {exc!r}") from exc
        return EngineResponse(response)


class EngineResponse:
    """The engine's answer to a forwarded request, its body still to be read."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def status_code(self) -> int:
        return self._response.status

    async def read(self) -> bytes:
        """The whole body (EngineStreamBroken if the connection breaks first)."""
        try:
            return await self._response.read()
        except (aiohttp.ClientError, OSError) as exc:
            raise EngineStreamBroken(repr(exc)) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive: all that is there at each step, so several SSE events
        per chunk when the client is behind (EngineStreamBroken if the connection breaks)."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, OSError) as exc:
            raise EngineStreamBroken(repr(exc)) from exc

    def close(self) -> None:
        """Done with it: a body read to its end frees the connection for the next request; one
        left unread closes the connection, which makes the engine abort the request."""
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class EngineStreamBroken(Exception):
    """The engine's connection broke while its answer was being read."""


def _json_or_text(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"message": response.text}
    return body if isinstance(body, dict) else {"message": str(body)}
