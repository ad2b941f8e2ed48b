"""Supervised fine-tuning: QLoRA with TRL's SFTTrainer on assistant-only labels."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from trainer.data import DataValidationError, load_chat_examples
from trainer.events import EventWriter
from trainer.formatting import tokenize_example
from trainer.loop import start_run
from trainer.spec import TrainingSpec
from trainer.stopping import StopRequest
from trainer.token_cache import cache_key, cached


@dataclass
class TokenizedFile:
    dataset: Dataset
    tokens: int
    truncated: int
    left_out: int  # examples with no assistant token left after truncation
    prompts: list[list[dict[str, Any]]]  # the first turns of a few examples, for the adapter check
    from_cache: bool = False


def build_dataset(
    tokenizer: Any, path: Path, param: str, max_length: int, cache_dir: Path | None
) -> TokenizedFile:
    def tokenize() -> tuple[Dataset, dict[str, Any]]:
        examples = load_chat_examples(path, param)
        tokenized = [tokenize_example(tokenizer, ex, max_length) for ex in examples]
        # An example cut before any assistant token has nothing to learn from: it is left out.
        rows = [r for r in tokenized if r.n_loss_tokens]
        if not rows:
            raise DataValidationError(
                "invalid_training_file" if param == "training_file" else "invalid_validation_file",
                f"No example in the {param.replace('_', ' ')} has an assistant token within the first "
                f"{max_length} tokens; raise opentune.max_seq_length or shorten the prompts",
                param,
            )
        columns = {"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows]}
        meta = {
            "tokens": sum(len(r.input_ids) for r in rows),
            "truncated": sum(r.truncated for r in tokenized),
            "left_out": len(tokenized) - len(rows),
            "prompts": [p for p in (_prompt_of(ex.messages) for ex in examples[:3]) if p],
        }
        return Dataset.from_dict(columns), meta

    dataset, meta, hit = cached(cache_dir, cache_key(path, tokenizer, max_length), tokenize)
    return TokenizedFile(dataset, meta["tokens"], meta["truncated"], meta["left_out"], meta["prompts"], hit)


def _prompt_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages before the first assistant turn."""
    first = next((i for i, m in enumerate(messages) if m.get("role") == "assistant"), 0)
    return [{"role": m["role"], "content": m.get("content") or ""} for m in messages[:first]]


def sft_arguments(spec: TrainingSpec, common: dict[str, Any]) -> dict[str, Any]:
    """Padding-free batches (TRL's collator lays the examples end to end with per-example position
    ids; transformers then masks attention between them, with SDPA as with flash-attention), or,
    with padding, batches of similar lengths so short examples pay little of it."""
    if spec.padding_free:
        # Examples are already cut to max_seq_length when tokenized, and TRL enforces no max length
        # without packing.
        return {**common, "padding_free": True, "max_length": None}
    return {**common, "train_sampling_strategy": "group_by_length"}


def run_sft(spec: TrainingSpec, events: EventWriter, stop_requested: StopRequest) -> None:
    run = start_run(spec, events, stop_requested)
    cache = spec.token_cache_dir
    train = build_dataset(run.tokenizer, spec.training_file, "training_file", spec.max_seq_length, cache)
    if train.from_cache:
        events.message("Tokenized training data found in the cache")
    valid = None
    if spec.validation_file:
        valid = build_dataset(
            run.tokenizer, spec.validation_file, "validation_file", spec.max_seq_length, cache
        )
    steps_per_epoch = math.ceil(len(train.dataset) / spec.batch_size)
    total_steps = steps_per_epoch * spec.n_epochs
    events.message(
        f"Training on {len(train.dataset)} examples ({train.tokens} tokens per epoch, {total_steps} steps)"
    )
    if train.truncated:
        events.message(
            f"{train.truncated} example(s) longer than {spec.max_seq_length} tokens were truncated",
            level="warn",
        )
    if train.left_out:
        events.message(
            f"{train.left_out} example(s) had no assistant token within {spec.max_seq_length} tokens "
            "and were left out",
            level="warn",
        )

    run.plan_memory(spec.batch_size * max(map(len, train.dataset["input_ids"])))
    model, peft_config = run.model_and_peft_config()
    progress = run.progress(steps_per_epoch, valid is not None)
    eval_steps = max(1, total_steps // spec.evaluations_per_job)
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(**sft_arguments(spec, run.common_arguments(eval_steps, valid is not None))),
        train_dataset=train.dataset,
        eval_dataset=valid.dataset if valid else None,
        processing_class=run.tokenizer,
        peft_config=peft_config,
        callbacks=[progress],
    )
    run.fit(trainer, progress, train.tokens * spec.n_epochs, train.prompts, measure_base=valid is not None)
