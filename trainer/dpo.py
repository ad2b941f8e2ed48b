"""Direct preference optimization: TRL's DPOTrainer on the same QLoRA base.

Starting from a fine-tuned model (`init_adapter`, SFT then DPO as the usual recipe goes), the
reference model is that adapter frozen (TRL copies it as "ref"); otherwise it is the base model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from trainer.data import PreferenceExample, load_preference_examples
from trainer.events import EventWriter
from trainer.loop import start_run
from trainer.spec import TrainingSpec
from trainer.stopping import StopRequest


def _clean(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k != "weight"}


def preference_rows(examples: list[PreferenceExample]) -> list[dict[str, Any]]:
    """TRL's conversational preference format; its chat template is the base tokenizer's."""
    return [
        {
            "prompt": [_clean(m) for m in ex.messages],
            "chosen": [_clean(ex.preferred)],
            "rejected": [_clean(ex.non_preferred)],
        }
        for ex in examples
    ]


def _dataset(path: Path, param: str) -> Dataset:
    return Dataset.from_list(preference_rows(load_preference_examples(path, param)))


def _pair_tokens(tokenizer: Any, dataset: Dataset) -> list[int]:
    """Tokens of each pair: both completions, each with its prompt (one forward pass holds both)."""
    return [
        sum(
            len(tokenizer.apply_chat_template(row["prompt"] + row[side], tokenize=True)["input_ids"])
            for side in ("chosen", "rejected")
        )
        for row in dataset
    ]


def run_dpo(spec: TrainingSpec, events: EventWriter, stop_requested: StopRequest) -> None:
    run = start_run(spec, events, stop_requested)
    train = _dataset(spec.training_file, "training_file")
    valid = _dataset(spec.validation_file, "validation_file") if spec.validation_file else None
    steps_per_epoch = math.ceil(len(train) / spec.batch_size)
    total_steps = steps_per_epoch * spec.n_epochs
    events.message(f"DPO on {len(train)} preference pairs (beta={spec.beta}, {total_steps} steps)")

    pair_tokens = _pair_tokens(run.tokenizer, train)
    run.plan_memory(spec.batch_size * max(pair_tokens))
    model, peft_config = run.model_and_peft_config()
    progress = run.progress(steps_per_epoch, valid is not None)
    eval_steps = max(1, total_steps // spec.evaluations_per_job)
    trainer = DPOTrainer(
        model=model,
        args=DPOConfig(beta=spec.beta, **run.common_arguments(eval_steps, valid is not None)),
        train_dataset=train,
        eval_dataset=valid,
        processing_class=run.tokenizer,
        peft_config=peft_config,
        callbacks=[progress],
    )
    prompts = [list(row["prompt"]) for row in train.select(range(min(3, len(train))))]
    # The base model's DPO loss, against the base as reference, is log 2; against an adapter the job
    # continues from (the reference then) it says nothing of that adapter: not measured.
    measure_base = valid is not None and spec.init_adapter is None
    run.fit(trainer, progress, sum(pair_tokens) * spec.n_epochs, prompts, measure_base=measure_base)
