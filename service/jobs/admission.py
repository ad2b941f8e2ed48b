"""queued -> running, decided: whether a queued job starts now, waits, or fails.

`plan` is a pure function of the job row and what the scheduler found out about the world for it
(`Admission`, gathered by service/jobs/inputs.py): testable without files, engines or processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

from service.jobs.capacity import BatchSizeLimit
from service.jobs.hyperparameters import resolve_hyperparameters
from service.jobs.spec import JobInputs, build_spec
from service.store import JobRow
from trainer.spec import TrainingSpec


@dataclass(frozen=True)
class Admission:
    """What starting one job depends on, as found just before deciding."""

    inputs: JobInputs
    # The param ("training_file", "validation_file") of a file deleted or expired since creation.
    missing_file: str | None = None
    # The fine-tuned model the job continues from no longer exists.
    model_missing: bool = False
    # Why a trainer would not fit in memory now (service/jobs/capacity.py), or None.
    memory_shortfall: str | None = None
    # An "auto" batch size lowered to fit the free memory, or None.
    batch_size_limit: BatchSizeLimit | None = None


@dataclass(frozen=True)
class Start:
    spec: TrainingSpec
    hyperparameters: dict[str, object]  # as resolved, in the wire form the job shows from now on
    notes: list[str] = field(default_factory=list)  # events to add when it starts


@dataclass(frozen=True)
class Wait:
    reason: str


@dataclass(frozen=True)
class Fail:
    code: str
    message: str
    param: str | None = None


Decision = Start | Wait | Fail


def plan(job: JobRow, admission: Admission) -> Decision:
    if admission.missing_file is not None:
        param = admission.missing_file
        file_id = job.training_file if param == "training_file" else job.validation_file
        message = f"The {param.replace('_', ' ')} {file_id} was deleted or has expired."
        return Fail(f"invalid_{param}", message, param)
    if admission.model_missing:
        return Fail(
            "model_not_found", f"The model {job.model} this job continues from no longer exists.", "model"
        )
    if admission.memory_shortfall is not None:
        return Wait(admission.memory_shortfall)
    limit = admission.batch_size_limit
    resolved = resolve_hyperparameters(
        job.requested_hyperparameters,
        job.n_training_examples or 0,
        job.method_type,
        batch_size_limit=limit.batch_size if limit else None,
    )
    try:
        spec = build_spec(job, admission.inputs, resolved)
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        message = f"The job's hyperparameters cannot be used for training ({reasons})."
        return Fail("invalid_hyperparameters", message)
    return Start(spec, resolved.to_wire(), [limit.reason] if limit else [])
