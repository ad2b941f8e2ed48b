"""The base model's validation loss, measured once before training: the base side of the job's
evaluation report (the gateway's service/jobs/evaluator.py compares it with the last validation).

A new adapter's LoRA B matrices start at zero, so the model before step 1 is the base model itself;
an adapter the job continues from (`init_adapter`) is switched off for the measurement instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from trainer.events import BaseValidationEvent, EventWriter


def report_base_validation(trainer: Any, events: EventWriter, disable_adapter: bool) -> None:
    """Evaluate `trainer`'s validation set before it trains and report it; `disable_adapter`: with
    the adapter switched off (needed only when the adapter is not new)."""
    switched_off = trainer.model.disable_adapter() if disable_adapter else contextlib.nullcontext()
    with _callbacks_silenced(trainer), switched_off:
        metrics = trainer.evaluate()
    if "eval_loss" not in metrics:
        return
    accuracy = metrics.get("eval_mean_token_accuracy")
    events.emit(
        BaseValidationEvent(valid_loss=float(metrics["eval_loss"]), valid_mean_token_accuracy=accuracy)
    )


@contextlib.contextmanager
def _callbacks_silenced(trainer: Any) -> Iterator[None]:
    """No callback hears this evaluation: the progress callback would report it as a step's metrics
    (trainer/progress.py), and W&B would log it before its run starts."""
    handler = trainer.callback_handler
    callbacks = handler.callbacks
    handler.callbacks = []
    try:
        yield
    finally:
        handler.callbacks = callbacks
