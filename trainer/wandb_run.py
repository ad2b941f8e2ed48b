"""Weights & Biases, for a job that asks for it (`integrations=[{"type": "wandb", "wandb": {...}}]`,
as OpenAI's): the run gets the job's hyperparameters, every step's training and validation metrics
(transformers' W&B callback, `report_to=["wandb"]`) and, at the end, the adapter as an artifact
reference (its stored location: nothing is uploaded). A job without the integration never imports
wandb.

Credentials are the server's (the trainer's environment): `WANDB_API_KEY`, or `WANDB_MODE=offline`
for a local run folder under the job's output (`wandb sync` uploads it later). The run's id is the
job's, so a trainer started again after a crash continues the same run. W&B failing to start (no
key, no network) is a warning event, not a failed job.
"""

from __future__ import annotations

from typing import Any

from trainer import storage
from trainer.events import EventWriter
from trainer.spec import TrainingSpec


class WandbTracking:
    def __init__(self, run: Any, spec: TrainingSpec) -> None:
        self.run = run
        self.spec = spec

    @classmethod
    def start(cls, spec: TrainingSpec, events: EventWriter) -> WandbTracking | None:
        if spec.wandb is None:
            return None
        try:
            import wandb

            run = wandb.init(
                project=spec.wandb.project,
                entity=spec.wandb.entity,
                name=spec.wandb.name or spec.job_id,
                tags=spec.wandb.tags or None,
                id=spec.job_id,
                resume="allow",
                dir=str(spec.output_dir),
                config=_config(spec),
                # stdout carries the trainer's events: W&B must neither print to it nor wrap it.
                settings=wandb.Settings(console="off", silent=True),
            )
        except Exception as exc:  # no key, no network, a refused project: train without it
            reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            events.message(f"Weights & Biases run not started: {reason}", level="warn")
            return None
        if run.settings.mode == "offline":
            where = f"run {run.id} in project {spec.wandb.project}, offline (`wandb sync` uploads it)"
        else:
            where = str(run.url)
        events.message(f"Weights & Biases: {where}")
        return cls(run, spec)

    def finish(self, with_adapter: bool) -> None:
        """The run ends; with the adapter's location as an artifact reference when it was saved."""
        if with_adapter:
            import wandb

            location = self.spec.adapter_location
            uri = location if storage.is_remote(location) else f"file://{location}"
            artifact = wandb.Artifact(f"{self.spec.job_id}-adapter", type="model")
            artifact.add_reference(uri, name="adapter")
            self.run.log_artifact(artifact)
        self.run.finish()


def _config(spec: TrainingSpec) -> dict[str, Any]:
    return {
        "job_id": spec.job_id,
        "base_model": spec.base_model,
        "method": spec.method,
        "n_epochs": spec.n_epochs,
        "batch_size": spec.batch_size,
        "learning_rate": spec.learning_rate,
        "seed": spec.seed,
        "lora_r": spec.lora.r,
        "lora_alpha": spec.lora.alpha,
        "max_seq_length": spec.max_seq_length,
    }
