"""What the trainer reports while it runs: metrics events and CSV, checkpoints, stopping on request."""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from trainer.checkpoints import checkpoint_steps
from trainer.events import EventWriter, MetricsEvent
from trainer.stopping import StopRequest

CSV_COLUMNS = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]


class MetricsTable:
    """Per-step metrics, in OpenAI's result-file columns. Rewritten whole on each save, so a run
    resumed from step N keeps rows up to N and continues from there."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        self.columns = CSV_COLUMNS  # RFT adds its reward columns (trainer/rft.py)
        self.rows: dict[int, dict[str, Any]] = {}
        if resume_step is not None and path.exists():
            with path.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    if int(row["step"]) <= resume_step:
                        self.rows[int(row["step"])] = row

    def record(self, step: int, **values: Any) -> None:
        row = self.rows.setdefault(step, {"step": step})
        row.update({k: v for k, v in values.items() if v is not None})

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        with partial.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, self.columns, restval="", extrasaction="ignore")
            writer.writeheader()
            for step in sorted(self.rows):
                writer.writerow(self.rows[step])
        partial.replace(self.path)


class ProgressCallback(TrainerCallback):
    """Reports steps, validation and checkpoints as events; stops (after a checkpoint) on request.

    HF logs a step's training loss, then evaluates: a step's metrics event waits for its evaluation
    (if any), so each step has exactly one event, with validation values only when measured there.
    """

    def __init__(
        self,
        events: EventWriter,
        table: MetricsTable,
        stop_requested: StopRequest,
        steps_per_epoch: int,
        keep_epoch_checkpoints: int,
        has_validation: bool,
    ) -> None:
        self.has_validation = has_validation
        self.events = events
        self.table = table
        self.stop_requested = stop_requested
        self.steps_per_epoch = steps_per_epoch
        self.keep = keep_epoch_checkpoints
        self.latest: dict[str, Any] = {}  # the latest train and validation values, for checkpoints
        self.last_checkpoint: str | None = None
        self._pending: dict[str, Any] | None = None
        self._tokens_seen: tuple[float, float] | None = None  # (TRL's num_tokens, when) at the last log

    def _flush(self) -> None:
        if self._pending is not None:
            self.events.metrics(MetricsEvent(**self._pending))
            self._pending = None

    def _pending_for(self, state: Any) -> dict[str, Any]:
        if self._pending is None or self._pending["step"] != state.global_step:
            self._flush()
            self._pending = {"step": state.global_step, "total_steps": state.max_steps}
        return self._pending

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **_: Any
    ) -> None:
        if not logs or "loss" not in logs:
            return
        train = {"train_loss": logs["loss"], "train_mean_token_accuracy": logs.get("mean_token_accuracy")}
        if "reward" in logs:  # GRPO (RFT): the mean reward of the step's samples
            train["train_reward_mean"] = logs["reward"]
        self.latest.update(train)
        if "num_tokens" in logs:
            now, tokens = time.monotonic(), float(logs["num_tokens"])
            if (
                self._tokens_seen is not None
                and now > self._tokens_seen[1]
                and tokens >= self._tokens_seen[0]
            ):
                rate = (tokens - self._tokens_seen[0]) / (now - self._tokens_seen[1])
                train["tokens_per_second"] = rate
            self._tokens_seen = (tokens, now)
        self.table.record(
            state.global_step,
            train_loss=train["train_loss"],
            train_accuracy=logs.get("mean_token_accuracy"),
            train_reward_mean=train.get("train_reward_mean"),
        )
        self._pending_for(state).update(train)

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **_: Any
    ) -> None:
        if not metrics or "eval_loss" not in metrics:
            return
        valid = {
            "valid_loss": metrics["eval_loss"],
            "valid_mean_token_accuracy": metrics.get("eval_mean_token_accuracy"),
        }
        if "eval_reward" in metrics:  # GRPO (RFT): the mean reward over the validation samples
            valid["valid_reward_mean"] = metrics["eval_reward"]
        self.latest.update(valid)
        self.table.record(state.global_step, **valid)
        self._pending_for(state).update(valid)
        self._flush()

    def on_step_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self._flush()

    def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self._flush()

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if self.has_validation and state.global_step == state.max_steps:
            control.should_evaluate = True  # a final validation, in the last step's event
        if self.stop_requested.is_set():
            control.should_save = True
            control.should_training_stop = True

    def on_epoch_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        # Stopping mid-epoch still ends the epoch loop, which would save the same step twice.
        if self.stop_requested.is_set() and self.last_checkpoint == self._path(args, state):
            control.should_save = False

    @staticmethod
    def _path(args: Any, state: Any) -> str:
        return str(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    def on_save(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self._flush()
        step = state.global_step
        checkpoints_dir = Path(args.output_dir)
        self.table.write()
        epoch_end = step % self.steps_per_epoch == 0
        epoch_steps = {s for s in checkpoint_steps(checkpoints_dir) if s % self.steps_per_epoch == 0}
        kept = sorted(epoch_steps)[-self.keep :]
        # Keep the last epoch checkpoints and this one (the resume point); drop everything else.
        for old in checkpoint_steps(checkpoints_dir):
            if old not in kept and old != step:
                shutil.rmtree(checkpoints_dir / f"checkpoint-{old}", ignore_errors=True)
        self.last_checkpoint = self._path(args, state)
        self.events.checkpoint(step, self.last_checkpoint, epoch_end, {"step": step, **self.latest}, kept)
