"""Per-epoch checkpoints of jobs: rows, their wire form, and pruning to the ones the trainer kept."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, select

from service.ids import new_id
from service.pagination import paginate
from service.protocol.common import IdCursorPage
from service.protocol.fine_tuning import CheckpointMetrics, FineTuningJobCheckpoint
from service.store import CheckpointRow, Database, JobRow

_METRIC_KEYS = set(CheckpointMetrics.model_fields)


class CheckpointStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, job: JobRow, step: int, name: str, path: str, metrics: dict[str, Any]) -> bool:
        """Record an epoch checkpoint; False when it was recorded already (a trainer re-reporting)."""
        with self.db.session() as session:
            exists = session.scalar(
                select(CheckpointRow.id).where(CheckpointRow.fine_tuned_model_checkpoint == name)
            )
            if exists:
                return False  # the same checkpoint reported again (a resumed or re-attached trainer)
            session.add(
                CheckpointRow(
                    id=new_id("ftckpt", separator="_"),
                    job_id=job.id,
                    organization_id=job.organization_id,
                    base_model=job.base_model,
                    created_at=int(time.time()),
                    step_number=step,
                    metrics={k: v for k, v in metrics.items() if k in _METRIC_KEYS and v is not None},
                    fine_tuned_model_checkpoint=name,
                    path=path,
                )
            )
        return True

    def prune(self, job_id: str, kept_steps: list[int]) -> list[str]:
        """Delete the job's checkpoints at steps not in `kept_steps`; their model names."""
        with self.db.session() as session:
            stale = list(
                session.scalars(
                    select(CheckpointRow).where(
                        CheckpointRow.job_id == job_id, CheckpointRow.step_number.not_in(kept_steps)
                    )
                )
            )
            if stale:
                session.execute(delete(CheckpointRow).where(CheckpointRow.id.in_([c.id for c in stale])))
        return [c.fine_tuned_model_checkpoint for c in stale]

    def of_org(self, org_id: str) -> list[CheckpointRow]:
        with self.db.session() as session:
            query = select(CheckpointRow).where(CheckpointRow.organization_id == org_id)
            return list(session.scalars(query.order_by(CheckpointRow.created_at, CheckpointRow.step_number)))

    def by_name(self, org_id: str, name: str) -> CheckpointRow | None:
        with self.db.session() as session:
            row = session.scalar(
                select(CheckpointRow).where(CheckpointRow.fine_tuned_model_checkpoint == name)
            )
        return row if row is not None and row.organization_id == org_id else None

    def remove(self, checkpoint_id: str) -> None:
        with self.db.session() as session:
            session.execute(delete(CheckpointRow).where(CheckpointRow.id == checkpoint_id))

    def list(self, job_id: str, after: str | None, limit: int) -> IdCursorPage[FineTuningJobCheckpoint]:
        """Newest (highest step) first."""
        with self.db.session() as session:
            query = select(CheckpointRow).where(CheckpointRow.job_id == job_id)
            rows = list(session.scalars(query.order_by(CheckpointRow.step_number.desc())))
        page, has_more = paginate(rows, after, limit, lambda r: r.id)
        return IdCursorPage[FineTuningJobCheckpoint](data=[to_wire(r) for r in page], has_more=has_more)


def to_wire(row: CheckpointRow) -> FineTuningJobCheckpoint:
    return FineTuningJobCheckpoint(
        id=row.id,
        created_at=row.created_at,
        fine_tuned_model_checkpoint=row.fine_tuned_model_checkpoint,
        fine_tuning_job_id=row.job_id,
        metrics=CheckpointMetrics(**row.metrics),
        step_number=row.step_number,
    )
