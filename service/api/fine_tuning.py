from typing import Annotated

from fastapi import APIRouter, Query

from service.deps import ComponentsDep, PrincipalDep
from service.protocol.common import CursorPage
from service.protocol.fine_tuning import CreateFineTuningJobRequest, FineTuningJob, FineTuningJobEvent

router = APIRouter(prefix="/fine_tuning/jobs", tags=["fine-tuning"])


@router.post("")
def create_job(c: ComponentsDep, who: PrincipalDep, body: CreateFineTuningJobRequest) -> FineTuningJob:
    """Create a job; its files are validated asynchronously (status `validating_files`)."""
    return c.fine_tuning.create(who.organization_id, body)


@router.get("")
def list_jobs(
    c: ComponentsDep,
    who: PrincipalDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> CursorPage[FineTuningJob]:
    return c.jobs.list(who.organization_id, after, limit)


@router.get("/{job_id}")
def retrieve_job(c: ComponentsDep, who: PrincipalDep, job_id: str) -> FineTuningJob:
    return c.fine_tuning.retrieve(who.organization_id, job_id)


@router.post("/{job_id}/cancel")
def cancel_job(c: ComponentsDep, who: PrincipalDep, job_id: str) -> FineTuningJob:
    return c.fine_tuning.cancel(who.organization_id, job_id)


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
