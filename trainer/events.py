"""The trainer's output protocol: one JSON object per line, typed on both ends.

The trainer writes these models (EventWriter); the gateway reads them back with `parse_event`
(service/jobs/supervision.py). Kinds: `message`, `metrics`, `base_validation` (the base model's
validation values, once, before training), `checkpoint`, `error` (a failure the trainer understood:
bad data, out of memory; not retried), `result` (the adapter is written), `stopped` (asked to stop;
where it can continue from). A human running the trainer by hand can
read them too.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

logger = logging.getLogger(__name__)


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)


class MessageEvent(_Event):
    event: Literal["message"] = "message"
    level: Literal["info", "warn", "error"] = "info"
    message: str


class MetricsEvent(_Event):
    """One optimizer step; validation values only at the steps where validation ran."""

    event: Literal["metrics"] = "metrics"
    step: int = Field(ge=0)
    total_steps: int = Field(ge=0)
    train_loss: float
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    # Training tokens per second since the previous metrics event (SFT: TRL counts the tokens).
    tokens_per_second: float | None = None
    # Reinforcement fine-tuning (OpenAI's names): the mean grader reward of the step's samples, and
    # of the validation samples at the steps where validation ran. train_loss is then GRPO's loss.
    train_reward_mean: float | None = None
    valid_reward_mean: float | None = None


class BaseValidationEvent(_Event):
    """The validation file measured on the model before its first step, with the adapter disabled:
    the base model's side of the job's evaluation report (service/jobs/evaluator.py)."""

    event: Literal["base_validation"] = "base_validation"
    valid_loss: float
    valid_mean_token_accuracy: float | None = None


class CheckpointEvent(_Event):
    event: Literal["checkpoint"] = "checkpoint"
    step: int = Field(ge=0)
    path: str
    epoch_end: bool  # epoch checkpoints become `ft:...:ckpt-step-N` models; others are resume points
    metrics: dict[str, float | int | None]
    kept_epoch_steps: list[int]  # the epoch checkpoints still on disk (older ones were pruned)


class ErrorEvent(_Event):
    event: Literal["error"] = "error"
    code: str
    message: str
    param: str | None = None


class ResultEvent(_Event):
    event: Literal["result"] = "result"
    adapter_dir: str
    metrics_csv: str
    trained_tokens: int = Field(ge=0)
    train_runtime_s: float | None = None
    peak_memory_bytes: int | None = None


class StoppedEvent(_Event):
    event: Literal["stopped"] = "stopped"
    step: int = Field(ge=0)
    checkpoint: str | None  # where a later run continues from; None: from the start


TrainerEvent = Annotated[
    MessageEvent
    | MetricsEvent
    | BaseValidationEvent
    | CheckpointEvent
    | ErrorEvent
    | ResultEvent
    | StoppedEvent,
    Field(discriminator="event"),
]
_EVENT = TypeAdapter[TrainerEvent](TrainerEvent)


def parse_event(line: bytes | str) -> TrainerEvent | None:
    """One line of a trainer's output as an event; None (logged) for anything else, so that a stray
    print or a newer trainer's unknown kind never stops the reader."""
    try:
        return _EVENT.validate_json(line)
    except ValidationError as exc:
        logger.debug("Not a trainer event (%s): %r", exc.errors()[0]["msg"], line[:200])
        return None


class EventWriter:
    def __init__(self, stream: TextIO) -> None:
        self._stream: TextIO | None = stream

    def emit(self, event: TrainerEvent) -> None:
        if self._stream is None:
            return
        try:
            self._stream.write(event.model_dump_json() + "\n")
            self._stream.flush()
        except (BrokenPipeError, ValueError):
            # The reader (the gateway) is gone: keep training and checkpointing; nobody listens.
            self._stream = None

    def message(self, message: str, level: Literal["info", "warn", "error"] = "info") -> None:
        self.emit(MessageEvent(level=level, message=message))

    def metrics(self, event: MetricsEvent) -> None:
        self.emit(event)

    def error(self, code: str, message: str, param: str | None = None) -> None:
        self.emit(ErrorEvent(code=code, message=message, param=param))

    def checkpoint(
        self,
        step: int,
        path: str,
        epoch_end: bool,
        metrics: dict[str, float | int | None],
        kept_epoch_steps: list[int],
    ) -> None:
        self.emit(
            CheckpointEvent(
                step=step, path=path, epoch_end=epoch_end, metrics=metrics, kept_epoch_steps=kept_epoch_steps
            )
        )

    def result(self, event: ResultEvent) -> None:
        self.emit(event)

    def stopped(self, step: int, checkpoint: str | None) -> None:
        self.emit(StoppedEvent(step=step, checkpoint=checkpoint))


def event_stream() -> TextIO:
    """The process's real stdout, kept for its events (JSON lines; trainer/__main__.py,
    trainer/export.py); from now on whatever else is printed (libraries) goes to stderr."""
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(events_fd, "w", buffering=1)
