"""The trainer's spec (trainer/spec.py) for a job: built in one place, from the job row, what
admission found (files, model, options) and the resolved hyperparameters. A new hyperparameter
is one line here and one field in TrainingSpec."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.jobs.hyperparameters import DEFAULT_DPO_BETA, ResolvedHyperparameters
from service.jobs.training_options import TrainingOptions
from service.store import JobRow
from trainer.spec import TrainingSpec


@dataclass(frozen=True)
class JobInputs:
    """Where a job's trainer reads and writes, and its options from the job's metadata."""

    options: TrainingOptions
    base_model_path: Path
    training_file: Path
    validation_file: Path | None
    output_dir: Path
    token_cache_dir: Path
    init_adapter: Path | None = None  # the adapter of the fine-tuned model it continues from


def build_spec(job: JobRow, inputs: JobInputs, resolved: ResolvedHyperparameters) -> TrainingSpec:
    """Raises pydantic's ValidationError when a value cannot be trained with (admission fails the job)."""
    return TrainingSpec(
        job_id=job.id,
        base_model=str(inputs.base_model_path),
        training_file=inputs.training_file,
        validation_file=inputs.validation_file,
        output_dir=inputs.output_dir,
        n_epochs=resolved.n_epochs,
        batch_size=resolved.batch_size,
        learning_rate=resolved.learning_rate,
        seed=job.seed,
        method=job.method_type,
        beta=resolved.beta or DEFAULT_DPO_BETA,
        init_adapter=inputs.init_adapter,
        lora=inputs.options.lora,
        token_cache_dir=inputs.token_cache_dir,
        max_seq_length=inputs.options.max_seq_length,
    )
