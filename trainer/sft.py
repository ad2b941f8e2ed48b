"""Supervised fine-tuning: QLoRA with TRL's SFTTrainer on assistant-only labels."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from trainer.data import load_chat_examples
from trainer.events import EventWriter
from trainer.formatting import tokenize_example
from trainer.loop import start_run
from trainer.spec import TrainingSpec


def build_dataset(tokenizer: Any, path: Path, param: str, max_length: int) -> tuple[Dataset, int]:
    """The tokenized examples of one file and their token count."""
    examples = load_chat_examples(path, param)
    rows = [tokenize_example(tokenizer, ex, max_length) for ex in examples]
    columns = {"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows]}
    return Dataset.from_dict(columns), sum(len(r.input_ids) for r in rows)


def run_sft(spec: TrainingSpec, events: EventWriter, stop_requested: threading.Event) -> None:
    run = start_run(spec, events, stop_requested)
    train, tokens_per_epoch = build_dataset(
        run.tokenizer, spec.training_file, "training_file", spec.max_seq_length
    )
    valid = None
    if spec.validation_file:
        valid, _ = build_dataset(run.tokenizer, spec.validation_file, "validation_file", spec.max_seq_length)
    steps_per_epoch = math.ceil(len(train) / spec.batch_size)
    total_steps = steps_per_epoch * spec.n_epochs
    events.message(
        f"Training on {len(train)} examples ({tokens_per_epoch} tokens per epoch, {total_steps} steps)"
    )

    model, peft_config = run.model_and_peft_config()
    progress = run.progress(steps_per_epoch, valid is not None)
    eval_steps = max(1, total_steps // spec.evaluations_per_job)
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(**run.common_arguments(eval_steps, valid is not None)),
        train_dataset=train,
        eval_dataset=valid,
        processing_class=run.tokenizer,
        peft_config=peft_config,
        callbacks=[progress],
    )
    run.fit(trainer, progress, trained_tokens=tokens_per_epoch * spec.n_epochs)
