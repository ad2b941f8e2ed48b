"""A job row's wire form, OpenAI's `FineTuningJob`."""

from __future__ import annotations

from service.protocol.fine_tuning import FineTuningJob, Hyperparameters, JobError, Method
from service.store import JobRow


def to_wire(row: JobRow) -> FineTuningJob:
    # Requested values ("auto" kept) until the trainer starts, then the resolved numbers.
    values = dict(row.hyperparameters or row.requested_hyperparameters)
    hyper = Hyperparameters(**values)  # beta (DPO) lives only under method.dpo
    options = {"hyperparameters": values, **(row.method_options or {})}
    method = Method.model_validate({"type": row.method_type, row.method_type: options})
    return FineTuningJob(
        id=row.id,
        created_at=row.created_at,
        error=JobError(**row.error) if row.error else None,
        fine_tuned_model=row.fine_tuned_model,
        finished_at=row.finished_at,
        hyperparameters=hyper,
        model=row.model,
        organization_id=row.organization_id,
        result_files=list(row.result_files or []),
        seed=row.seed,
        status=row.status,
        trained_tokens=row.trained_tokens,
        training_file=row.training_file,
        validation_file=row.validation_file,
        estimated_finish=row.estimated_finish,
        integrations=list(row.integrations or []),
        metadata=row.job_metadata,
        method=method,
        user_provided_suffix=row.suffix,
    )
