from typing import Annotated

from fastapi import APIRouter, Query, Request

from service.deps import ComponentsDep, PrincipalDep
from service.protocol.common import CursorPage, IdCursorPage
from service.protocol.fine_tuning import (
    CreateFineTuningJobRequest,
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
)

router = APIRouter(prefix="/fine_tuning/jobs", tags=["fine-tuning"])


@router.post("")
def create_job(c: ComponentsDep, who: PrincipalDep, body: CreateFineTuningJobRequest) -> FineTuningJob:
    """Create a job; its files are validated asynchronously (status `validating_files`)."""
    return c.fine_tuning.create(who.organization_id, body)


@router.get("")
def list_jobs(
    request: Request,
    c: ComponentsDep,
    who: PrincipalDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> CursorPage[FineTuningJob]:
    """Newest first; `metadata[key]=value` query parameters filter on job metadata."""
    metadata = {
        key[len("metadata[") : -1]: value
        for key, value in request.query_params.items()
        if key.startswith("metadata[") and key.endswith("]")
    }
    return c.jobs.list(who.organization_id, after, limit, metadata)


@router.get("/{job_id}")
def retrieve_job(c: ComponentsDep, who: PrincipalDep, job_id: str) -> FineTuningJob:
    return c.fine_tuning.retrieve(who.organization_id, job_id)


@router.post("/{job_id}/cancel")
def cancel_job(c: ComponentsDep, who: PrincipalDep, job_id: str) -> FineTuningJob:
    return c.fine_tuning.cancel(who.organization_id, job_id)


@router.post("/{job_id}/pause")
def pause_job(c: ComponentsDep, who: PrincipalDep, job_id: str) -> FineTuningJob:
    """A running job saves a checkpoint and stops; `resume` continues from it."""
    return c.fine_tuning.pause(who.organization_id, job_id)


@router.post("/{job_id}/resume")
def resume_job(c: ComponentsDep, who: PrincipalDep, job_id: str) -> FineTuningJob:
    return c.fine_tuning.resume(who.organization_id, job_id)


@router.get("/{job_id}/checkpoints")
def list_checkpoints(
    c: ComponentsDep,
    who: PrincipalDep,
    job_id: str,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
) -> IdCursorPage[FineTuningJobCheckpoint]:
    """One per epoch, the last 3 kept, newest first; each is usable as a chat model."""
    c.jobs.get(who.organization_id, job_id)
    return c.checkpoints.list(job_id, after, limit)


@router.get("/{job_id}/events")
def list_events(
    c: ComponentsDep,
    who: PrincipalDep,
    job_id: str,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> CursorPage[FineTuningJobEvent]:
    """Newest first, as OpenAI."""
    return c.jobs.list_events(who.organization_id, job_id, after, limit)
