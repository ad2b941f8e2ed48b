"""Embeddings for the `cosine` metric of text_similarity graders: an OpenAI-compatible
`POST {url}/embeddings` endpoint the operator configures (a vLLM serving an embedding model with
`--runner pooling`, a TEI server, OpenAI itself), used by the gateway (graders endpoints, job
creation checks) and by a reinforcement job's trainer alike. Without one, cosine is refused.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, Field

from trainer.graders.context import ModelCallError


class EmbeddingsEndpoint(BaseModel):
    """Where embeddings come from; the key is never logged (not in repr)."""

    url: str  # the API's base, e.g. http://embedder:8000/v1
    model: str
    api_key: str | None = Field(default=None, repr=False)
    timeout_s: float = Field(default=30.0, gt=0)


class EndpointEmbedder:
    """An `Embedder` (trainer/graders/context.py) calling `endpoint`; ModelCallError when it cannot,
    with a message that names neither the address nor the key."""

    def __init__(self, endpoint: EmbeddingsEndpoint) -> None:
        self.endpoint = endpoint
        headers = {"authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        self._headers = headers

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        body = {"model": self.endpoint.model, "input": texts}
        url = self.endpoint.url.rstrip("/") + "/embeddings"
        try:
            # A client per call: the gateway and the trainer run graders in several event loops.
            async with httpx.AsyncClient(timeout=self.endpoint.timeout_s) as http:
                response = await http.post(url, json=body, headers=self._headers)
        except httpx.HTTPError as exc:
            problem = type(exc).__name__
            raise ModelCallError(f"The embedding model could not be reached ({problem}).") from None
        if response.status_code != 200:
            raise ModelCallError(f"The embedding model answered with status {response.status_code}.")
        return _vectors(response, len(texts))


def _vectors(response: httpx.Response, count: int) -> list[list[float]]:
    try:
        data: Any = response.json()["data"]
        ordered = sorted(data, key=lambda item: item["index"])
        vectors = [[float(x) for x in item["embedding"]] for item in ordered]
    except (ValueError, KeyError, TypeError):
        raise ModelCallError("The embedding model's answer is not an embeddings list.") from None
    if len(vectors) != count or any(len(v) != len(vectors[0]) or not v for v in vectors):
        raise ModelCallError("The embedding model's answer does not have one vector per text.")
    return vectors
