"""Who supervises each running job, when several gateways share one database.

A gateway that starts a job's trainer owns the job under a lease (`jobs.owner`,
`jobs.lease_expires_at`) and renews it every third of its length. A gateway that dies stops renewing;
once the lease has expired another gateway adopts the job (re-attaching to its trainer if the
executor can, else continuing from the latest checkpoint). Every change of owner is one conditional
UPDATE, so two gateways never both adopt a job, and a gateway that finds it lost a job (its lease
expired while it was cut off from the database) kills its trainer: no job ever trains twice at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import ColumnElement, or_, select, update

from service.jobs.states import JobStatus
from service.store import Database, JobRow

_RUNNING = JobStatus.RUNNING.value


@dataclass(frozen=True)
class LeaseCheck:
    """What renewing found about the trainers this gateway runs."""

    lost: list[str]  # now owned by another gateway: kill their trainers
    ended: list[str]  # no longer running (paused or cancelled through another gateway): stop them


class JobLeases:
    def __init__(self, db: Database, owner: str, lease_s: float) -> None:
        self.db = db
        self.owner = owner
        self.lease_s = lease_s

    def claim_fields(self) -> dict[str, object]:
        """Set with a job's move to `running` (one conditional update): this gateway owns it."""
        return {"owner": self.owner, "lease_expires_at": time.time() + self.lease_s}

    def renew(self, supervised: list[str]) -> LeaseCheck:
        """Extend the lease of every running job this gateway owns; report the supervised jobs it no
        longer owns or that stopped running."""
        with self.db.session() as session:
            session.execute(
                update(JobRow)
                .where(JobRow.owner == self.owner, JobRow.status == _RUNNING)
                .values(lease_expires_at=time.time() + self.lease_s)
            )
            if not supervised:
                return LeaseCheck([], [])
            rows = session.execute(
                select(JobRow.id, JobRow.owner, JobRow.status).where(JobRow.id.in_(supervised))
            ).all()
        lost = [job_id for job_id, owner, _ in rows if owner != self.owner]
        ended = [job_id for job_id, owner, status in rows if owner == self.owner and status != _RUNNING]
        return LeaseCheck(lost, ended)

    def _adoptable_condition(self, own_too: bool) -> ColumnElement[bool]:
        expired = or_(
            JobRow.owner.is_(None), JobRow.lease_expires_at.is_(None), JobRow.lease_expires_at < time.time()
        )
        return or_(expired, JobRow.owner == self.owner) if own_too else expired

    def adoptable(self, own_too: bool) -> list[tuple[str, str | None]]:
        """Running jobs, with their owner, whose lease expired (or that have no owner: rows from
        before leases), and with `own_too` this gateway's own (it restarted: nobody renews them)."""
        with self.db.session() as session:
            query = (
                select(JobRow.id, JobRow.owner)
                .where(JobRow.status == _RUNNING, self._adoptable_condition(own_too))
                .order_by(JobRow.created_at)
            )
            return [(job_id, owner) for job_id, owner in session.execute(query)]

    def adopt(self, job_id: str, previous_owner: str | None, own_too: bool) -> bool:
        """Take the job over if it is still `previous_owner`'s and still adoptable; False when
        another gateway was first (or the old owner renewed meanwhile)."""
        with self.db.session() as session:
            result = session.execute(
                update(JobRow)
                .where(
                    JobRow.id == job_id,
                    JobRow.status == _RUNNING,
                    JobRow.owner.is_not_distinct_from(previous_owner),
                    self._adoptable_condition(own_too),
                )
                .values(owner=self.owner, lease_expires_at=time.time() + self.lease_s)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def claim_file_check(self, job_id: str, hold_s: float) -> bool:
        """Take the file check of a job in validating_files, so that one gateway runs it. The claim
        holds `hold_s` (the check's time limit and a margin): past it another gateway may check the
        files again (the first died mid-check). False when another gateway holds it."""
        with self.db.session() as session:
            result = session.execute(
                update(JobRow)
                .where(
                    JobRow.id == job_id,
                    JobRow.status == JobStatus.VALIDATING_FILES.value,
                    self._adoptable_condition(own_too=True),
                )
                .values(owner=self.owner, lease_expires_at=time.time() + hold_s)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def release(self, job_ids: list[str]) -> None:
        """Let another gateway adopt these jobs at once (this one is shutting down)."""
        if not job_ids:
            return
        with self.db.session() as session:
            session.execute(
                update(JobRow)
                .where(JobRow.id.in_(job_ids), JobRow.owner == self.owner)
                .values(lease_expires_at=0.0)
            )
