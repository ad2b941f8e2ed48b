"""Supervised fine-tuning: QLoRA with TRL's SFTTrainer on assistant-only labels."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import AutoTokenizer, set_seed
from trl import SFTConfig, SFTTrainer

from trainer.checkpoints import checkpoint_step, latest_checkpoint
from trainer.data import load_chat_examples
from trainer.events import EventWriter
from trainer.formatting import tokenize_example
from trainer.model import compute_dtype, load_base_model, lora_config
from trainer.progress import MetricsTable, ProgressCallback
from trainer.spec import TrainingSpec


def build_dataset(tokenizer: Any, path: Path, param: str, max_length: int) -> tuple[Dataset, int]:
    """The tokenized examples of one file and their token count."""
    examples = load_chat_examples(path, param)
    rows = [tokenize_example(tokenizer, ex, max_length) for ex in examples]
    columns = {"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows]}
    return Dataset.from_dict(columns), sum(len(r.input_ids) for r in rows)


def sft_config(spec: TrainingSpec, total_steps: int, has_validation: bool) -> SFTConfig:
    eval_steps = max(1, total_steps // spec.evaluations_per_job)
    return SFTConfig(
        output_dir=str(spec.checkpoints_dir),
        num_train_epochs=spec.n_epochs,
        per_device_train_batch_size=spec.batch_size,
        per_device_eval_batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        lr_scheduler_type="linear",
        logging_steps=1,
        # One checkpoint per epoch (adapter, optimizer, scheduler, RNG); ProgressCallback prunes them.
        save_strategy="epoch",
        eval_strategy="steps" if has_validation else "no",
        eval_steps=eval_steps if has_validation else None,
        report_to=[],
        seed=spec.seed,
        data_seed=spec.seed,
        max_length=spec.max_seq_length,
        bf16=compute_dtype() == torch.bfloat16,
        gradient_checkpointing=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def run_sft(spec: TrainingSpec, events: EventWriter, stop_requested: threading.Event) -> None:
    set_seed(spec.seed)
    tokenizer = AutoTokenizer.from_pretrained(spec.base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train, tokens_per_epoch = build_dataset(
        tokenizer, spec.training_file, "training_file", spec.max_seq_length
    )
    valid = None
    if spec.validation_file:
        valid, _ = build_dataset(tokenizer, spec.validation_file, "validation_file", spec.max_seq_length)
    steps_per_epoch = math.ceil(len(train) / spec.batch_size)
    total_steps = steps_per_epoch * spec.n_epochs
    events.message(
        f"Training on {len(train)} examples ({tokens_per_epoch} tokens per epoch, {total_steps} steps)"
    )

    # A job's folder holds only its own checkpoints: the latest is where a paused or interrupted
    # run stopped, so a trainer always continues from it.
    resume_from = latest_checkpoint(spec.checkpoints_dir)
    resume_step = checkpoint_step(resume_from) if resume_from else None
    if resume_step is not None:
        events.message(f"Resuming from the checkpoint at step {resume_step}")
    table = MetricsTable(spec.metrics_csv, resume_step)
    progress = ProgressCallback(
        events, table, stop_requested, steps_per_epoch, spec.keep_epoch_checkpoints, valid is not None
    )
    trainer = SFTTrainer(
        model=load_base_model(spec),
        args=sft_config(spec, total_steps, valid is not None),
        train_dataset=train,
        eval_dataset=valid,
        processing_class=tokenizer,
        peft_config=lora_config(spec.lora),
        callbacks=[progress],
    )
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    if stop_requested.is_set():
        events.stopped(step=trainer.state.global_step, checkpoint=progress.last_checkpoint)
        return
    table.write()
    # Writes the adapter and the tokenizer, so the chat template used in training travels with it.
    trainer.save_model(str(spec.adapter_dir))
    events.result(
        adapter_dir=str(spec.adapter_dir),
        metrics_csv=str(spec.metrics_csv),
        trained_tokens=tokens_per_epoch * spec.n_epochs,
    )
