"""Grader tokens: how a reinforcement job's trainer calls its organization's models for the job's
model graders (score_model, label_model), through this server's own POST /v1/chat/completions.

A token is minted each time a trainer of such a job starts (service/jobs/grader_access.py puts it
in the trainer's spec) and replaces the job's earlier ones. It is accepted only while its job is
running or paused (a pausing trainer grades until its checkpoint), so it stops working when the job
ends, in every gateway at once: the job's status in the shared database decides, nothing cached.
It acts as the job's organization and only on GRADER_ROUTES (service/auth.py's Principal): a leaked
token reaches neither files, jobs nor keys. Only SHA-256 digests are stored; tokens are never logged.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select, update

from service.jobs.states import JobStatus
from service.store import Database, GraderTokenRow, JobRow

# Unlike any key `opentune keys create` makes ("sk-ot-" then letters and digits), so the two are
# told apart before any look-up; "sk-" so that secret scanners treat one found in a log as a secret.
GRADER_TOKEN_PREFIX = "sk-otg-"
# What a grader token may call: (method, path), nothing else.
GRADER_ROUTES = frozenset({("POST", "/v1/chat/completions")})
_VALID_WHILE = (JobStatus.RUNNING.value, JobStatus.PAUSED.value)


@dataclass(frozen=True)
class TokenHolder:
    """The job a valid token was minted for, and that job's organization."""

    job_id: str
    organization_id: str


def is_grader_token(key: str) -> bool:
    return key.startswith(GRADER_TOKEN_PREFIX)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class GraderTokens:
    def __init__(self, db: Database) -> None:
        self.db = db

    def mint(self, job_id: str) -> str:
        """A new token for the job's trainer; the job's earlier tokens stop working."""
        token = GRADER_TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = int(time.time())
        with self.db.session() as session:
            session.execute(
                update(GraderTokenRow)
                .where(GraderTokenRow.job_id == job_id, GraderTokenRow.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            session.add(GraderTokenRow(token_hash=_digest(token), job_id=job_id, created_at=now))
        return token

    def holder(self, token: str) -> TokenHolder | None:
        """Whose token it is, while it is valid; None otherwise (unknown, replaced, job ended)."""
        query = (
            select(GraderTokenRow.job_id, JobRow.organization_id)
            .join(JobRow, JobRow.id == GraderTokenRow.job_id)
            .where(
                GraderTokenRow.token_hash == _digest(token),
                GraderTokenRow.revoked_at.is_(None),
                JobRow.status.in_(_VALID_WHILE),
            )
        )
        with self.db.session() as session:
            found = session.execute(query).first()
        return TokenHolder(found.job_id, found.organization_id) if found is not None else None
