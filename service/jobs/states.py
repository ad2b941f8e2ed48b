"""The job state machine, in one place.

validating_files -> queued -> running -> succeeded | failed | cancelled
running -> paused (a checkpoint saved, the trainer exits) -> queued (resume) -> running ...
Any non-terminal state may be cancelled. Transitions are applied in the database with
`UPDATE ... WHERE status IN (allowed sources)`, so two actors (a cancel request and a trainer
finishing) cannot both win.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    VALIDATING_FILES = "validating_files"
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.VALIDATING_FILES: frozenset({JobStatus.QUEUED, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}),
    # running -> queued: the server restarted under a running job, which continues from its checkpoint.
    JobStatus.RUNNING: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PAUSED, JobStatus.QUEUED}
    ),
    # paused -> succeeded: the trainer finished its last step just as the pause arrived.
    JobStatus.PAUSED: frozenset({JobStatus.QUEUED, JobStatus.CANCELLED, JobStatus.SUCCEEDED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def can_transition(source: JobStatus, target: JobStatus) -> bool:
    return target in _TRANSITIONS[source]


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    """The states from which `target` may be entered."""
    return frozenset(s for s, targets in _TRANSITIONS.items() if target in targets)
