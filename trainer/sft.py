"""Supervised fine-tuning: QLoRA with TRL's SFTTrainer on assistant-only labels."""

from __future__ import annotations

import threading
from typing import Any

import torch
from datasets import Dataset
from transformers import AutoTokenizer, TrainerCallback, set_seed
from trl import SFTConfig, SFTTrainer

from trainer.data import load_chat_examples
from trainer.events import EventWriter
from trainer.formatting import tokenize_example
from trainer.model import compute_dtype, load_base_model, lora_config
from trainer.spec import TrainingSpec


class EventCallback(TrainerCallback):
    """Reports each logged step as a metrics event and stops training when asked (SIGTERM)."""

    def __init__(self, events: EventWriter, stop_requested: threading.Event) -> None:
        self.events = events
        self.stop_requested = stop_requested

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **_: Any
    ) -> None:
        if not logs or "loss" not in logs:
            return
        self.events.metrics(
            step=state.global_step,
            total_steps=state.max_steps,
            train_loss=logs["loss"],
            train_mean_token_accuracy=logs.get("mean_token_accuracy"),
        )

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if self.stop_requested.is_set():
            control.should_training_stop = True


def build_dataset(tokenizer: Any, spec: TrainingSpec) -> tuple[Dataset, int]:
    """The tokenized training set and its token count (what one epoch trains on)."""
    examples = load_chat_examples(spec.training_file)
    rows = [tokenize_example(tokenizer, ex, spec.max_seq_length) for ex in examples]
    dataset = Dataset.from_dict(
        {"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows]}
    )
    return dataset, sum(len(r.input_ids) for r in rows)


def run_sft(spec: TrainingSpec, events: EventWriter, stop_requested: threading.Event) -> None:
    set_seed(spec.seed)
    tokenizer = AutoTokenizer.from_pretrained(spec.base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dataset, tokens_per_epoch = build_dataset(tokenizer, spec)
    events.message(f"Training on {len(dataset)} examples ({tokens_per_epoch} tokens per epoch)")

    model = load_base_model(spec)
    config = SFTConfig(
        output_dir=str(spec.output_dir / "trainer"),
        num_train_epochs=spec.n_epochs,
        per_device_train_batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        lr_scheduler_type="linear",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=spec.seed,
        max_length=spec.max_seq_length,
        bf16=compute_dtype() == torch.bfloat16,
        gradient_checkpointing=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(spec.lora),
        callbacks=[EventCallback(events, stop_requested)],
    )
    trainer.train()
    if stop_requested.is_set():
        events.stopped(step=trainer.state.global_step)
        return
    spec.adapter_dir.mkdir(parents=True, exist_ok=True)
    # Writes the adapter and the tokenizer, so the chat template used in training travels with it.
    trainer.save_model(str(spec.adapter_dir))
    events.result(adapter_dir=str(spec.adapter_dir), trained_tokens=tokens_per_epoch * spec.n_epochs)
