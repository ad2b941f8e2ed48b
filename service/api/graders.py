"""Graders, at OpenAI's paths (`client.fine_tuning.alpha.graders.run` / `.validate`)."""

from fastapi import APIRouter

from service.deps import ComponentsDep, PrincipalDep
from service.protocol.graders import (
    GraderRunRequest,
    GraderRunResponse,
    GraderValidateRequest,
    GraderValidateResponse,
)

router = APIRouter(tags=["graders"])


@router.post("/fine_tuning/alpha/graders/run")
async def run_grader(c: ComponentsDep, who: PrincipalDep, body: GraderRunRequest) -> GraderRunResponse:
    """The grader's reward for `model_sample` and `item`; a grader that fails on them scores 0 with
    the error's flag in `metadata.errors` (a 400 only for an invalid grader)."""
    return await c.graders.run(who.organization_id, body)


@router.post("/fine_tuning/alpha/graders/validate", response_model_exclude_none=True)
async def validate_grader(
    c: ComponentsDep, who: PrincipalDep, body: GraderValidateRequest
) -> GraderValidateResponse:
    """The grader as it will be used (unset optional fields left out), or a 400 naming the field."""
    return await c.graders.validate(who.organization_id, body.grader)
