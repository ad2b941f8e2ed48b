"""Persistence of jobs and their events, and their wire form."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, or_, select, update

from service.errors import NotFound
from service.ids import new_id
from service.jobs.fairness import QueuedJob
from service.jobs.job_wire import to_wire
from service.jobs.states import JobStatus, sources_of
from service.metrics import observe_transition
from service.pagination import paginate
from service.protocol.common import CursorPage
from service.protocol.fine_tuning import (
    FineTuningJob,
    FineTuningJobEvent,
)
from service.store import Database, EventRow, JobRow
from service.webhooks.outbox import enqueue_job_event

# Statuses that count against an organization's active-jobs quota.
ACTIVE_STATUSES = (JobStatus.VALIDATING_FILES, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED)


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def insert(self, row: JobRow) -> None:
        with self.db.session() as session:
            session.add(row)
            session.flush()  # the job row must exist before its first event (foreign key)
            session.add(_event_row(row.id, "info", f"Created fine-tuning job: {row.id}"))

    def get(self, org_id: str | None, job_id: str) -> JobRow:
        """A job by id; `org_id=None` is the scheduler's unscoped view."""
        with self.db.session() as session:
            row = session.get(JobRow, job_id)
        if row is None or (org_id is not None and row.organization_id != org_id):
            raise NotFound(f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id", code="not_found")
        return row

    def ids_in_status(self, status: JobStatus) -> list[str]:
        with self.db.session() as session:
            query = select(JobRow.id).where(JobRow.status == status.value).order_by(JobRow.created_at)
            return list(session.scalars(query))

    def fine_tuned(self, org_id: str, name: str | None = None) -> list[JobRow]:
        """The organization's succeeded jobs whose model was not deleted (one, by model name)."""
        query = select(JobRow).where(
            JobRow.organization_id == org_id,
            JobRow.status == JobStatus.SUCCEEDED.value,
            JobRow.fine_tuned_model.is_not(None),
            JobRow.model_deleted_at.is_(None),
        )
        if name is not None:
            query = query.where(JobRow.fine_tuned_model == name)
        with self.db.session() as session:
            return list(session.scalars(query.order_by(JobRow.finished_at)))

    def last_metrics_step(self, job_id: str) -> int | None:
        """The step of the job's latest metrics event, if any."""
        with self.db.session() as session:
            query = (
                select(EventRow.data)
                .where(EventRow.job_id == job_id, EventRow.type == "metrics")
                .order_by(EventRow.seq.desc())
                .limit(1)
            )
            data = session.scalar(query)
        return int(data["step"]) if data and "step" in data else None

    def latest_event_value(self, job_id: str, key: str, type_: str) -> Any:
        """`key`'s value in the data of the job's newest event of `type_` that has it; None if none."""
        with self.db.session() as session:
            query = (
                select(EventRow.data)
                .where(EventRow.job_id == job_id, EventRow.type == type_)
                .order_by(EventRow.seq.desc())
            )
            for data in session.scalars(query):
                if data and key in data:
                    return data[key]
        return None

    def count_active(self, org_id: str) -> int:
        """The organization's jobs that hold or wait for a trainer (validating_files, queued,
        running, paused): what its active-jobs quota counts."""
        active = [status.value for status in ACTIVE_STATUSES]
        with self.db.session() as session:
            query = select(func.count()).where(JobRow.organization_id == org_id, JobRow.status.in_(active))
            return int(session.scalar(query) or 0)

    def waiting_jobs(self, status: JobStatus) -> list[QueuedJob]:
        """Every job in `status` with its organization, for fair_order (service/jobs/fairness.py)."""
        with self.db.session() as session:
            query = select(JobRow.id, JobRow.organization_id, JobRow.created_at).where(
                JobRow.status == status.value
            )
            return [QueuedJob(job_id, org, created) for job_id, org, created in session.execute(query)]

    def running_by_org(self) -> dict[str, int]:
        """How many jobs each organization has running."""
        with self.db.session() as session:
            query = (
                select(JobRow.organization_id, func.count())
                .where(JobRow.status == JobStatus.RUNNING.value)
                .group_by(JobRow.organization_id)
            )
            return {org: int(count) for org, count in session.execute(query)}

    def count_by_status(self) -> dict[str, int]:
        """Jobs in each status, every organization (service/metrics.py)."""
        with self.db.session() as session:
            query = select(JobRow.status, func.count()).group_by(JobRow.status)
            return {status: int(count) for status, count in session.execute(query)}

    def running_throughput(self) -> dict[str, float]:
        """Running jobs' tokens per second, from each one's latest metrics event that has it."""
        with self.db.session() as session:
            running = select(JobRow.id).where(JobRow.status == JobStatus.RUNNING.value)
            latest = (
                select(func.max(EventRow.seq))
                .where(EventRow.job_id.in_(running), EventRow.type == "metrics")
                .group_by(EventRow.job_id)
            )
            rows = session.execute(select(EventRow.job_id, EventRow.data).where(EventRow.seq.in_(latest)))
            found = {job_id: (data or {}).get("tokens_per_second") for job_id, data in rows}
        return {job_id: float(rate) for job_id, rate in found.items() if isinstance(rate, int | float)}

    def list(
        self, org_id: str, after: str | None, limit: int, metadata: dict[str, str] | None = None
    ) -> CursorPage[FineTuningJob]:
        """Newest first; `metadata` keeps the jobs whose metadata has all these pairs."""
        with self.db.session() as session:
            query = (
                select(JobRow)
                .where(JobRow.organization_id == org_id)
                .order_by(JobRow.created_at.desc(), JobRow.id.desc())
            )
            rows = list(session.scalars(query))
        if metadata:
            rows = [r for r in rows if all((r.job_metadata or {}).get(k) == v for k, v in metadata.items())]
        page, has_more = paginate(rows, after, limit, lambda r: r.id)
        return CursorPage[FineTuningJob](data=[to_wire(r) for r in page], has_more=has_more)

    def transition(
        self,
        job_id: str,
        target: JobStatus,
        only_from: set[JobStatus] | None = None,
        events: Sequence[str | tuple[str, str]] = (),
        running_owner: str | None = None,
        **fields: Any,
    ) -> bool:
        """Move the job to `target` if its current state allows it (and is in `only_from`, when given);
        set `fields` and add `events` (messages, or (message, level) pairs) in the same transaction,
        so that nobody sees the new state without the events that explain it. With `running_owner`, a
        running job moves only while that gateway owns it (service/jobs/leases.py).

        Returns False (and changes nothing) when the job is in a state that may not go to `target`.
        """
        allowed = [s.value for s in sources_of(target) if only_from is None or s in only_from]
        if target.is_terminal:
            fields.setdefault("finished_at", int(time.time()))
            fields.setdefault("estimated_finish", None)
        query = update(JobRow).where(JobRow.id == job_id, JobRow.status.in_(allowed))
        if running_owner is not None:
            query = query.where(or_(JobRow.status != JobStatus.RUNNING.value, JobRow.owner == running_owner))
        with self.db.session() as session:
            # A first start: the job has trained no step yet (a resumed or retried one has).
            first_start = target is JobStatus.RUNNING and not session.scalar(
                select(EventRow.seq).where(EventRow.job_id == job_id, EventRow.type == "metrics").limit(1)
            )
            result = session.execute(query.values(status=target.value, **fields))
            moved = bool(result.rowcount)  # type: ignore[attr-defined]
            for event in events if moved else ():
                message, level = (event, "info") if isinstance(event, str) else event
                session.add(_event_row(job_id, level, message))
            if moved and target.is_terminal:
                enqueue_job_event(session, job_id, target.value)  # webhooks: with the end, or not at all
            if moved and (target.is_terminal or first_start):
                created_at = session.scalar(select(JobRow.created_at).where(JobRow.id == job_id)) or 0
                tokens = fields.get("trained_tokens") if target is JobStatus.SUCCEEDED else None
                observe_transition(target.value, created_at, target.is_terminal, first_start, tokens)
            return moved

    def update_fields(self, job_id: str, **fields: Any) -> None:
        with self.db.session() as session:
            session.execute(update(JobRow).where(JobRow.id == job_id).values(**fields))

    def add_event(
        self,
        job_id: str,
        message: str,
        level: str = "info",
        type_: str = "message",
        data: dict[str, Any] | None = None,
    ) -> None:
        with self.db.session() as session:
            session.add(_event_row(job_id, level, message, type_, data))

    def list_events(
        self, org_id: str, job_id: str, after: str | None, limit: int
    ) -> CursorPage[FineTuningJobEvent]:
        self.get(org_id, job_id)
        with self.db.session() as session:
            query = select(EventRow).where(EventRow.job_id == job_id).order_by(EventRow.seq.desc())
            if after:
                cursor = session.scalar(select(EventRow.seq).where(EventRow.id == after))
                if cursor is not None:
                    query = query.where(EventRow.seq < cursor)
            rows = list(session.scalars(query.limit(limit + 1)))
        data = [FineTuningJobEvent.model_validate(r, from_attributes=True) for r in rows[:limit]]
        return CursorPage[FineTuningJobEvent](data=data, has_more=len(rows) > limit)


def _event_row(
    job_id: str, level: str, message: str, type_: str = "message", data: dict[str, Any] | None = None
) -> EventRow:
    return EventRow(
        id=new_id("ftevent"),
        job_id=job_id,
        created_at=int(time.time()),
        level=level,
        message=message,
        type=type_,
        data=data if data is not None else {},
    )
