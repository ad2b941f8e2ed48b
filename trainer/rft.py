"""Reinforcement fine-tuning: TRL's GRPOTrainer on the same QLoRA base, rewarded by the job's grader.

Each step samples `num_generations` completions for each of `batch_size` prompts (transformers'
generate; no vLLM in the trainer), scores them with the grader (trainer/rewards.py), and moves the
adapter toward the completions that scored above their group's mean. Validation, when there is a
file, samples `eval_samples` completions per prompt every `eval_interval` steps and reports their
mean reward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from trainer.data import DataValidationError, ReinforcementExample, load_reinforcement_examples
from trainer.events import EventWriter
from trainer.loop import Run, start_run
from trainer.progress import CSV_COLUMNS
from trainer.rewards import GraderReward, checked_grader, grading_context
from trainer.spec import ReinforcementSettings, TrainingSpec
from trainer.stopping import StopRequest
from trainer.structured_sampling import compile_response_format, constrain_generation

REWARD_COLUMNS = ["train_reward_mean", "valid_reward_mean"]


@dataclass
class Prompts:
    """A file's prompts as TRL's conversational rows (`prompt`, and `row`: where its grader fields
    are in GraderReward.items), and how many were too long to sample from."""

    dataset: Dataset
    longest: int  # tokens of the longest prompt kept
    left_out: int


class GradingSummary(TrainerCallback):
    """How many samples were graded and how many failed, once training ends (before the result)."""

    def __init__(self, reward: GraderReward) -> None:
        self.reward = reward

    def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self.reward.events.message(self.reward.summary())


def _prompt(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # A loss `weight` on earlier assistant turns means nothing here: the model learns from samples.
    return [{k: v for k, v in m.items() if k != "weight"} for m in messages]


def build_prompts(
    run: Run, examples: list[ReinforcementExample], first_row: int, param: str, completion_tokens: int
) -> Prompts:
    """Prompts that leave room for a whole completion within max_seq_length; longer ones are left
    out (none left is an error, as with SFT)."""
    room = run.spec.max_seq_length - completion_tokens
    rows, longest = [], 0
    for number, example in enumerate(examples):
        prompt = _prompt(example.messages)
        tokens = len(run.tokenizer.apply_chat_template(prompt, add_generation_prompt=True)["input_ids"])
        if tokens <= room:
            rows.append({"prompt": prompt, "row": first_row + number})
            longest = max(longest, tokens)
    if not rows:
        kind = "validation" if param == "validation_file" else "training"
        raise DataValidationError(
            f"invalid_{kind}_file",
            f"No prompt in the {kind} file fits in {run.spec.max_seq_length} tokens with room for "
            f"{completion_tokens} completion tokens; shorten the prompts or raise opentune.max_seq_length",
            param,
        )
    return Prompts(Dataset.from_list(rows), longest, len(examples) - len(rows))


def grpo_arguments(
    spec: TrainingSpec, settings: ReinforcementSettings, common: dict[str, Any], prompts_per_step: int
) -> dict[str, Any]:
    """GRPO counts its batch in completions: a step's batch is `prompts_per_step` prompts, each
    sampled `num_generations` times; an evaluation batch holds whole groups of `eval_samples`."""
    common = {k: v for k, v in common.items() if k != "max_length"}  # GRPO bounds completions instead
    return {
        **common,
        "per_device_train_batch_size": prompts_per_step * settings.num_generations,
        "per_device_eval_batch_size": prompts_per_step * settings.eval_samples,
        "num_generations": settings.num_generations,
        "num_generations_eval": settings.eval_samples,
        "max_completion_length": settings.max_completion_tokens,
        "temperature": settings.temperature,
        "beta": 0.0,  # no KL term, so no reference model to hold (TRL's default)
        "log_completions": False,
    }


def run_rft(spec: TrainingSpec, events: EventWriter, stop_requested: StopRequest) -> None:
    settings = spec.reinforcement
    if settings is None:
        raise ValueError("the spec's method is 'reinforcement' but it has no 'reinforcement' settings")
    run = start_run(spec, events, stop_requested)
    run.table.columns = [*CSV_COLUMNS, *REWARD_COLUMNS]
    hidden = [spec.output_dir, spec.training_file.parent]
    hidden += [spec.validation_file.parent] if spec.validation_file else []
    context = grading_context(settings, hidden)
    grader = checked_grader(settings, context)

    examples = load_reinforcement_examples(spec.training_file, "training_file")
    valid_examples = (
        load_reinforcement_examples(spec.validation_file, "validation_file") if spec.validation_file else []
    )
    completion_tokens = settings.max_completion_tokens
    train = build_prompts(run, examples, 0, "training_file", completion_tokens)
    valid = None
    if valid_examples:
        valid = build_prompts(run, valid_examples, len(examples), "validation_file", completion_tokens)
    items = [example.item for example in (*examples, *valid_examples)]
    reward = GraderReward(grader, context, items, events)

    # TRL's sampler takes whole batches of prompts: an epoch drops the last partial one (a fresh
    # random order each epoch, so every prompt still gets its turns).
    prompts_per_step = min(spec.batch_size, len(train.dataset))
    steps_per_epoch = len(train.dataset) // prompts_per_step
    total_steps = steps_per_epoch * spec.n_epochs
    events.message(
        f"Reinforcement fine-tuning on {len(train.dataset)} prompts: {prompts_per_step} prompts per step, "
        f"{settings.num_generations} samples each, {total_steps} steps"
    )
    for kind, part in (("training", train), ("validation", valid)):
        if part is not None and part.left_out:
            events.message(
                f"{part.left_out} {kind} prompt(s) leave no room for {completion_tokens} completion tokens "
                f"within {spec.max_seq_length} tokens and were left out",
                level="warn",
            )

    completions_per_step = prompts_per_step * settings.num_generations
    run.plan_memory(completions_per_step * (train.longest + completion_tokens))
    model, peft_config = run.model_and_peft_config()
    progress = run.progress(steps_per_epoch, valid is not None)
    eval_steps = settings.eval_interval or max(1, total_steps // spec.evaluations_per_job)
    common = run.common_arguments(eval_steps, valid is not None)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=cast(Any, reward),  # TRL awaits async callables; its annotation omits them
        args=GRPOConfig(**grpo_arguments(spec, settings, common, prompts_per_step)),
        train_dataset=train.dataset,
        eval_dataset=valid.dataset if valid else None,
        processing_class=run.tokenizer,
        peft_config=peft_config,
        callbacks=[progress, GradingSummary(reward)],
    )
    stop_ids = model.generation_config.eos_token_id
    grammar = compile_response_format(settings.response_format, run.tokenizer, model.config, stop_ids)
    if grammar is not None:
        constrain_generation(trainer.model, grammar)
    prompts = [_prompt(example.messages) for example in examples[:3]]
    # Prompt and completion tokens through the model, as TRL counts them (known once trained).
    run.fit(trainer, progress, lambda: int(trainer.state.num_input_tokens_seen), prompts)
