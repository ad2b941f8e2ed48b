"""A stand-in for an OpenAI-compatible embeddings API (the operator's, outside the product), for
the cosine metric's tests: a text's vector is its letter counts over "abc"."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass
class Embedder:
    """Answers POST /v1/embeddings like OpenAI (in reverse index order, as a server may)."""

    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> JSONResponse:
            body = await request.json()
            self.requests.append({"body": body, "authorization": request.headers.get("authorization")})
            if self.status != 200:
                return JSONResponse({"error": {"message": "down"}}, self.status)
            data = [
                {"object": "embedding", "index": i, "embedding": [float(text.count(c)) for c in "abc"]}
                for i, text in enumerate(body["input"])
            ]
            return JSONResponse({"object": "list", "data": data[::-1], "model": body["model"]})

        return app
