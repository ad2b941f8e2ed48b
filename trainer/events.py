"""The trainer's output protocol: one JSON object per line.

Kinds: `message` (level, message), `metrics` (step, total_steps, train_loss, ...), `checkpoint`
(step, path, epoch_end, metrics, kept_epoch_steps), `error` (code, message, param), `result`
(adapter_dir, metrics_csv, trained_tokens), `stopped` (step, checkpoint). The gateway turns them
into job events and state changes; a human running the trainer by hand can read them too.
"""

from __future__ import annotations

import json
from typing import Any, TextIO


class EventWriter:
    def __init__(self, stream: TextIO) -> None:
        self._stream: TextIO | None = stream

    def emit(self, kind: str, **fields: Any) -> None:
        if self._stream is None:
            return
        try:
            self._stream.write(json.dumps({"event": kind, **fields}) + "\n")
            self._stream.flush()
        except (BrokenPipeError, ValueError):
            # The reader (the gateway) is gone: keep training and checkpointing; nobody listens.
            self._stream = None

    def message(self, message: str, level: str = "info") -> None:
        self.emit("message", level=level, message=message)

    def metrics(self, **values: Any) -> None:
        self.emit("metrics", **values)

    def error(self, code: str, message: str, param: str | None = None) -> None:
        self.emit("error", code=code, message=message, param=param)

    def checkpoint(
        self, step: int, path: str, epoch_end: bool, metrics: dict[str, Any], kept_epoch_steps: list[int]
    ) -> None:
        self.emit(
            "checkpoint",
            step=step,
            path=path,
            epoch_end=epoch_end,
            metrics=metrics,
            kept_epoch_steps=kept_epoch_steps,
        )

    def result(self, adapter_dir: str, metrics_csv: str, trained_tokens: int, **measurements: Any) -> None:
        self.emit(
            "result",
            adapter_dir=adapter_dir,
            metrics_csv=metrics_csv,
            trained_tokens=trained_tokens,
            **measurements,
        )

    def stopped(self, step: int, checkpoint: str | None) -> None:
        self.emit("stopped", step=step, checkpoint=checkpoint)
