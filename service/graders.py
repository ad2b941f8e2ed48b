"""The graders endpoints' domain: a grader validated or run for an organization, with the grading
library (trainer/graders/) given this server's parts.

Model graders call the organization's models through the same path as its chat completions
(service/engine/serving.py's `complete`: the catalog's name resolution, a replica of the model's
engine, the organization's concurrency limit and cache salt, the adapter held while it runs), so a
grader can use exactly the models GET /v1/models lists for that organization. Python graders run
in the sandbox (trainer/graders/sandbox.py) with the data folder hidden. Invalid graders are 400s
naming the field; a grader that fails on the sample is a 200 with reward 0 and the error's flag.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from service.config import Settings
from service.engine.fleet import EngineFleet
from service.engine.limits import ChatLimits
from service.engine.serving import ModelResolver, complete
from service.errors import InvalidRequest, NotFound, ServiceError, openai_error_for
from service.protocol.graders import (
    GraderRunErrors,
    GraderRunMetadata,
    GraderRunRequest,
    GraderRunResponse,
    GraderValidateResponse,
    ModelTokenUsage,
)
from trainer.graders import (
    ChatReply,
    ChatRequest,
    EmbeddingsEndpoint,
    EndpointEmbedder,
    Grader,
    GraderError,
    GradeResult,
    GradingContext,
    ModelCallError,
    Sample,
    Sandbox,
    SandboxLimits,
    grade,
    validate,
)
from trainer.graders.context import chat_reply


def sandbox_limits(settings: Settings) -> SandboxLimits:
    return SandboxLimits(
        time_limit_s=settings.python_grader_time_limit_s,
        memory_bytes=settings.python_grader_memory_mib * 2**20,
        max_concurrent=settings.python_grader_max_concurrent,
        hidden_paths=(settings.data_dir.resolve(),),
    )


class EngineModels:
    """The ModelCaller of one organization: its models, through this server's engines."""

    def __init__(self, catalog: ModelResolver, fleet: EngineFleet, limits: ChatLimits, org_id: str) -> None:
        self.catalog, self.fleet, self.limits, self.org_id = catalog, fleet, limits, org_id

    def knows(self, model: str) -> bool:
        try:
            self.catalog.resolve(self.org_id, model)
        except NotFound:
            return False
        return True

    async def chat(self, model: str, request: ChatRequest) -> ChatReply:
        body: dict[str, Any] = {"model": model, "messages": request.messages, **request.sampling}
        if request.response_format is not None:
            body["response_format"] = request.response_format
        try:
            path = "/v1/chat/completions"
            response = await complete(self.catalog, self.fleet, self.limits, self.org_id, path, body)
        except ServiceError as exc:
            raise ModelCallError(openai_error_for(exc).message) from None
        try:
            payload = json.loads(bytes(response.body))
        except ValueError:
            payload = None
        if response.status_code >= 400 or not isinstance(payload, dict):
            error = payload.get("error") if isinstance(payload, dict) else None
            message = error.get("message") if isinstance(error, dict) else None
            status = response.status_code
            raise ModelCallError(str(message or f"The model answered with status {status}."))
        return chat_reply(payload)


def embeddings_endpoint(settings: Settings) -> EmbeddingsEndpoint | None:
    """Where the cosine metric's embeddings come from (OPENTUNE_EMBEDDINGS_*); None: unset."""
    if not settings.embeddings_url or not settings.embeddings_model:
        return None
    key = settings.embeddings_api_key.get_secret_value() if settings.embeddings_api_key else None
    return EmbeddingsEndpoint(url=settings.embeddings_url, model=settings.embeddings_model, api_key=key)


class GraderService:
    def __init__(
        self,
        catalog: ModelResolver,
        fleet: EngineFleet,
        limits: ChatLimits,
        sandbox: Sandbox,
        embeddings: EmbeddingsEndpoint | None = None,
    ) -> None:
        self.catalog, self.fleet, self.limits, self.sandbox = catalog, fleet, limits, sandbox
        self.embed = EndpointEmbedder(embeddings) if embeddings is not None else None
        # Metrics are CPU-bound: two threads of their own, so slow ones never hold the default pool.
        self.executor = ThreadPoolExecutor(2, thread_name_prefix="grading")

    def context(self, org_id: str) -> GradingContext:
        models = EngineModels(self.catalog, self.fleet, self.limits, org_id)
        return GradingContext(models=models, embed=self.embed, sandbox=self.sandbox, executor=self.executor)

    async def validate(self, org_id: str, grader: Grader) -> GraderValidateResponse:
        return GraderValidateResponse(grader=await self._validated(grader, self.context(org_id)))

    async def run(self, org_id: str, request: GraderRunRequest) -> GraderRunResponse:
        context = self.context(org_id)
        grader = await self._validated(request.grader, context)
        result = await grade(grader, Sample.from_text(request.model_sample), request.item, context)
        return run_response(result)

    async def _validated(self, grader: Grader, context: GradingContext) -> Grader:
        try:
            # In a thread: it may read the database (the model's name) and probe the sandbox.
            return await asyncio.to_thread(validate, grader, context)
        except GraderError as exc:
            raise InvalidRequest(exc.message, param=exc.param, code=exc.code) from None


def run_response(result: GradeResult) -> GraderRunResponse:
    usage = {
        model: ModelTokenUsage(total_tokens=tokens.total_tokens, **asdict(tokens))
        for model, tokens in result.token_usage_per_model.items()
    }
    metadata = GraderRunMetadata(
        errors=GraderRunErrors(**asdict(result.errors)),
        execution_time=result.execution_time,
        name=result.name,
        sampled_model_name=result.sampled_model_name,
        scores=dict(result.scores),
        token_usage=result.token_usage,
        type=result.type,
    )
    return GraderRunResponse(
        reward=result.reward,
        metadata=metadata,
        sub_rewards=dict(result.sub_rewards),
        model_grader_token_usage_per_model=usage,
    )
