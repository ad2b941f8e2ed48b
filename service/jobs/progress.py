"""A running trainer's events, recorded: messages and metrics become job events, epoch checkpoints
become `ft:...:ckpt-step-N` models, and the estimated finish follows the steps. The job's end is
service/jobs/outcomes.py's business."""

from __future__ import annotations

import time

from service.jobs.checkpoints import CheckpointStore
from service.jobs.naming import checkpoint_model_name
from service.jobs.store import JobStore
from service.store import JobRow
from trainer.events import BaseValidationEvent, CheckpointEvent, MessageEvent, MetricsEvent, TrainerEvent

# The data key of the event that records the base model's validation loss (read back by
# service/jobs/evaluator.py when the job's evaluation report is made).
BASE_VALID_LOSS = "base_valid_loss"


class ProgressRecorder:
    def __init__(self, jobs: JobStore, checkpoints: CheckpointStore) -> None:
        self.jobs = jobs
        self.checkpoints = checkpoints

    def record(self, job: JobRow, event: TrainerEvent, started_at: float) -> list[str]:
        """Record one event of the trainer started at `started_at` (monotonic); returns the names of
        checkpoint models that no longer exist (to unload from the engine)."""
        if isinstance(event, MessageEvent):
            self.jobs.add_event(job.id, event.message, level=event.level)
        elif isinstance(event, MetricsEvent):
            self._metrics(job, event, started_at)
        elif isinstance(event, CheckpointEvent):
            return self._checkpoint(job, event)
        elif isinstance(event, BaseValidationEvent):
            data = {BASE_VALID_LOSS: event.valid_loss}
            if event.valid_mean_token_accuracy is not None:
                data["base_valid_mean_token_accuracy"] = event.valid_mean_token_accuracy
            message = f"Base model before training: validation loss={event.valid_loss:.4f}"
            self.jobs.add_event(job.id, message, data=data)
        return []

    def _metrics(self, job: JobRow, event: MetricsEvent, started_at: float) -> None:
        data = event.model_dump(exclude={"event"}, exclude_none=True)
        message = f"Step {event.step}/{event.total_steps}: training loss={event.train_loss:.4f}"
        if event.valid_loss is not None:
            message += f", validation loss={event.valid_loss:.4f}"
        self.jobs.add_event(job.id, message, type_="metrics", data=data)
        if event.step > 0:
            elapsed = time.monotonic() - started_at
            remaining = elapsed / event.step * max(event.total_steps - event.step, 0)
            self.jobs.update_fields(job.id, estimated_finish=int(time.time() + remaining))

    def _checkpoint(self, job: JobRow, event: CheckpointEvent) -> list[str]:
        if event.epoch_end:
            name = checkpoint_model_name(job.model_name, event.step)
            if self.checkpoints.add(job, event.step, name, event.path, event.metrics):
                self.jobs.add_event(job.id, f"Checkpoint created at step {event.step}: {name}")
        return self.checkpoints.prune(job.id, event.kept_epoch_steps)


class Replay:
    """A re-attached trainer's log starts from the beginning (Ray's does): its messages and metrics
    up to the last step already recorded are skipped. Checkpoints always pass (recording one twice
    changes nothing), as do the events after that step."""

    def __init__(self, recorded_through_step: int | None) -> None:
        self.through = recorded_through_step

    def is_new(self, event: TrainerEvent) -> bool:
        if self.through is None or isinstance(event, CheckpointEvent):
            return True
        if isinstance(event, MetricsEvent) and event.step > self.through:
            self.through = None  # caught up: everything from here on is new
            return True
        return False
