"""The trainer's spec (trainer/spec.py) for a job: built in one place, from the job row, what
admission found (files, model, options) and the resolved hyperparameters. A new hyperparameter
is one line here and one field in TrainingSpec."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.jobs.hyperparameters import DEFAULT_DPO_BETA, ResolvedHyperparameters
from service.jobs.integrations import wandb_run
from service.jobs.reinforcement import settings_for
from service.jobs.training_options import TrainingOptions
from service.store import JobRow
from trainer import storage
from trainer.spec import StoredLocations, TrainingSpec


@dataclass(frozen=True)
class JobInputs:
    """Where a job's trainer reads and writes (storage locations, trainer/storage.py), and its
    options from the job's metadata."""

    options: TrainingOptions
    base_model_path: Path
    training_file: str
    validation_file: str | None
    output: str
    token_cache_dir: Path
    init_adapter: str | None = None  # the adapter of the fine-tuned model it continues from


def build_spec(job: JobRow, inputs: JobInputs, resolved: ResolvedHyperparameters) -> TrainingSpec:
    """Raises pydantic's ValidationError when a value cannot be trained with (admission fails the job)."""
    return TrainingSpec(
        job_id=job.id,
        base_model=str(inputs.base_model_path),
        **_paths(inputs),
        n_epochs=resolved.n_epochs,
        batch_size=resolved.batch_size,
        learning_rate=resolved.learning_rate,
        seed=job.seed,
        method=job.method_type,
        beta=resolved.beta or DEFAULT_DPO_BETA,
        lora=inputs.options.lora,
        max_seq_length=inputs.options.max_seq_length,
        wandb=wandb_run(job.integrations),
        reinforcement=settings_for(job.method_options or {}, resolved, inputs.options)
        if job.method_type == "reinforcement"
        else None,
    )


def _paths(inputs: JobInputs) -> dict[str, Any]:
    """The spec's file and folder fields: the locations themselves in the data folder; in object
    storage, its `stored` section and paths relative to the trainer's scratch folder
    (trainer/staging.py)."""
    if not storage.is_remote(inputs.output):
        return {
            "training_file": Path(inputs.training_file),
            "validation_file": Path(inputs.validation_file) if inputs.validation_file else None,
            "init_adapter": Path(inputs.init_adapter) if inputs.init_adapter else None,
            "output_dir": Path(inputs.output),
            "token_cache_dir": inputs.token_cache_dir,
        }
    stored = StoredLocations(
        training_file=inputs.training_file,
        validation_file=inputs.validation_file,
        init_adapter=inputs.init_adapter,
        output=inputs.output,
    )
    return {
        "training_file": Path("input/training.jsonl"),
        "validation_file": Path("input/validation.jsonl") if inputs.validation_file else None,
        "init_adapter": Path("input/init_adapter") if inputs.init_adapter else None,
        "output_dir": Path("output"),
        "stored": stored,
    }
