"""HTTP client of one vLLM engine: health, runtime LoRA loading, and request forwarding."""

from __future__ import annotations

from typing import Any

import httpx

from service.errors import EngineRejected, EngineUnreachable


class EngineClient:
    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        # False while a managed engine restarts: requests fail with EngineUnreachable meanwhile.
        self.available = True
        # No read timeout: generations and streams last as long as they last; the client may cancel.
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(None, connect=5.0))
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

    async def send(self, path: str, body: dict[str, Any], stream: bool) -> httpx.Response:
        """Send a request; with stream=True the caller must close the response."""
        request = self.http.build_request("POST", path, json=body)
        try:
            return await self.http.send(request, stream=stream)
        except httpx.HTTPError as exc:
            raise EngineUnreachable(f"the engine at {self.base_url} is not reachable: {exc!r}") from exc


def _json_or_text(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"message": response.text}
    return body if isinstance(body, dict) else {"message": str(body)}
