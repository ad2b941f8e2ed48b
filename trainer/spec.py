"""The job spec: everything the trainer needs, written by the gateway as JSON (or by hand)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from trainer import storage
from trainer.graders.embeddings import EmbeddingsEndpoint


class LoraSettings(BaseModel):
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # "all-linear" is peft's shorthand for every linear layer except the output head.
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class StoredLocations(BaseModel):
    """Where the job's bytes are when they live in object storage (trainer/storage.py locations).
    The trainer then copies its inputs in and its output out (trainer/staging.py), and the spec's
    path fields are relative: resolved in a scratch folder on the machine it runs on."""

    training_file: str
    validation_file: str | None = None
    init_adapter: str | None = None
    output: str


class WandbRun(BaseModel):
    """A Weights & Biases run to log to (a job's `wandb` integration, as OpenAI's)."""

    project: str = Field(min_length=1, max_length=128)
    name: str | None = Field(default=None, max_length=128)
    entity: str | None = Field(default=None, max_length=128)
    tags: list[str] = Field(default_factory=list, max_length=64)


class ModelGraderAccess(BaseModel):
    """How the trainer calls models for score_model and label_model graders: the gateway's POST
    /v1/chat/completions at `gateway_url`, with a token that acts as the job's organization on that
    route alone, only while the job runs (service/grader_tokens.py). Never logged (not in repr)."""

    gateway_url: str
    token: str = Field(repr=False)
    max_concurrent: int = Field(default=8, ge=1)  # calls in flight at once


class ReinforcementSettings(BaseModel):
    """Reinforcement fine-tuning (GRPO, trainer/rft.py): samples scored by the job's grader."""

    grader: dict[str, Any] = Field(description="OpenAI's grader object (trainer/graders checks it).")
    # Completions sampled per prompt: GRPO's group, whose rewards are compared with each other.
    num_generations: int = Field(default=4, ge=2)
    max_completion_tokens: int = Field(default=64, ge=1)
    # OpenAI's response_format (json_schema, json_object, text): the sampled answers' constraint
    # (trainer/structured_sampling.py).
    response_format: dict[str, Any] | None = None
    temperature: float = Field(default=1.0, gt=0)
    # Training steps between evaluations on the validation file (None: evaluations_per_job spread).
    eval_interval: int | None = Field(default=None, ge=1)
    # Completions sampled per validation prompt at each evaluation (their mean reward is reported).
    eval_samples: int = Field(default=1, ge=1)
    # The python grader's sandbox limits.
    python_grader_timeout_s: float = Field(default=10.0, gt=0)
    python_grader_memory_mb: int = Field(default=512, ge=64)
    # Set by the gateway when the grader has model graders (None: they cannot run).
    model_graders: ModelGraderAccess | None = None
    # The embeddings API for cosine graders (service/jobs/grader_access.py); None: cosine refused.
    embeddings: EmbeddingsEndpoint | None = None


class TrainingSpec(BaseModel):
    job_id: str
    base_model: str = Field(description="Hub id or local folder of the base model.")
    training_file: Path
    validation_file: Path | None = None
    output_dir: Path
    method: Literal["supervised", "dpo", "reinforcement"] = "supervised"
    beta: float = Field(default=0.1, gt=0, description="DPO's KL penalty; unused by supervised training.")
    # The adapter of an earlier fine-tuned model to continue from (e.g. SFT, then DPO).
    init_adapter: Path | None = None
    n_epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    seed: int = 0
    lora: LoraSettings = Field(default_factory=LoraSettings)
    max_seq_length: int = 2048
    load_in_4bit: bool = True
    # Padding-free batches: a batch's examples are laid end to end in one row, each attending only to
    # itself (position ids restart per example), so no compute goes to padding. Same examples per
    # step and the same loss as padded batches.
    padding_free: bool = True
    # Recompute activations in the backward pass: a third slower, far less activation memory.
    # "auto": only when a step's activations would not fit in the free memory (trainer/memory.py).
    gradient_checkpointing: bool | Literal["auto"] = "auto"
    # Where tokenized data is cached by content (none: no cache).
    token_cache_dir: Path | None = None
    # Per-epoch checkpoints kept (as OpenAI: the last 3).
    keep_epoch_checkpoints: int = Field(default=3, ge=1)
    # Validation runs about this many times over the job (and at the end), when there is a file.
    evaluations_per_job: int = Field(default=10, ge=1)
    stored: StoredLocations | None = None
    wandb: WandbRun | None = None
    reinforcement: ReinforcementSettings | None = None  # with method "reinforcement"

    @property
    def adapter_location(self) -> str:
        """Where the adapter ends up: its stored location with object storage, else adapter_dir."""
        if self.stored is not None:
            return self.stored.output.rstrip("/") + "/adapter"
        return str(self.adapter_dir)

    @property
    def adapter_dir(self) -> Path:
        return self.output_dir / "adapter"

    @property
    def checkpoints_dir(self) -> Path:
        return self.output_dir / "checkpoints"

    @property
    def metrics_csv(self) -> Path:
        return self.output_dir / "metrics.csv"

    @classmethod
    def read(cls, location: str) -> TrainingSpec:
        """From a local path or a storage location (trainer/storage.py)."""
        return cls.model_validate_json(b"".join(storage.iter_bytes(location)))

    def write(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2))
