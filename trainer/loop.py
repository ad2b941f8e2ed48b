"""What every training method shares: seeding, resuming, progress, stopping, saving the adapter."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel, prepare_model_for_kbit_training
from transformers import AutoTokenizer, set_seed

from trainer.baseline import report_base_validation
from trainer.checkpoints import checkpoint_step, latest_checkpoint
from trainer.events import EventWriter, ResultEvent
from trainer.memory import GIB, ModelShape, free_memory_bytes, training_bytes
from trainer.model import ModelLoadError, compute_dtype, load_base_model, lora_config
from trainer.progress import MetricsTable, ProgressCallback
from trainer.spec import TrainingSpec
from trainer.stopping import StopRequest
from trainer.wandb_run import WandbTracking


@dataclass
class Run:
    spec: TrainingSpec
    events: EventWriter
    stop_requested: StopRequest
    tokenizer: Any
    resume_from: Path | None
    table: MetricsTable
    gradient_checkpointing: bool = True
    tracking: WandbTracking | None = None  # the job's W&B run, when it asks for one

    def plan_memory(self, tokens_per_step: int) -> None:
        """Settle "auto" gradient checkpointing: off when a step of `tokens_per_step` tokens fits in
        the free memory without it (the estimate is trainer/memory.py's), on otherwise."""
        if self.spec.gradient_checkpointing != "auto":
            self.gradient_checkpointing = self.spec.gradient_checkpointing
            return
        shape = ModelShape.read(Path(self.spec.base_model))
        if shape is None:  # a hub id, or a config we cannot read: the safe choice
            self.gradient_checkpointing = True
            return
        needed = training_bytes(
            shape,
            tokens_per_step,
            compute_bytes=compute_dtype().itemsize,
            checkpointing=False,
            lora_rank=self.spec.lora.r,
        )
        free = free_memory_bytes()
        self.gradient_checkpointing = needed > free
        if not self.gradient_checkpointing:
            self.events.message(
                f"Gradient checkpointing off: a step of up to {tokens_per_step} tokens needs about "
                f"{needed / GIB:.1f} GiB without it, and {free / GIB:.1f} GiB is free"
            )

    def model_and_peft_config(self) -> tuple[Any, Any]:
        """The 4-bit base with a trainable adapter: the one to continue from (`init_adapter`), or
        a new one that the trainer creates from the returned peft config."""
        model = load_base_model(self.spec)
        if self.spec.init_adapter is None:
            return model, lora_config(self.spec.lora)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=self.gradient_checkpointing)
        return PeftModel.from_pretrained(model, str(self.spec.init_adapter), is_trainable=True), None

    def progress(self, steps_per_epoch: int, has_validation: bool) -> ProgressCallback:
        return ProgressCallback(
            self.events,
            self.table,
            self.stop_requested,
            steps_per_epoch,
            self.spec.keep_epoch_checkpoints,
            has_validation,
        )

    def common_arguments(self, eval_steps: int, has_validation: bool) -> dict[str, Any]:
        """TrainingArguments shared by SFTConfig and DPOConfig."""
        return {
            "output_dir": str(self.spec.checkpoints_dir),
            "num_train_epochs": self.spec.n_epochs,
            "per_device_train_batch_size": self.spec.batch_size,
            "per_device_eval_batch_size": self.spec.batch_size,
            "learning_rate": self.spec.learning_rate,
            "lr_scheduler_type": "linear",
            "logging_steps": 1,
            # One checkpoint per epoch (adapter, optimizer, scheduler, RNG); ProgressCallback prunes them.
            "save_strategy": "epoch",
            "eval_strategy": "steps" if has_validation else "no",
            "eval_steps": eval_steps if has_validation else None,
            "report_to": ["wandb"] if self.tracking else [],
            "seed": self.spec.seed,
            "data_seed": self.spec.seed,
            "max_length": self.spec.max_seq_length,
            "bf16": compute_dtype() == torch.bfloat16,
            "gradient_checkpointing": self.gradient_checkpointing,
            # Paged 8-bit AdamW (QLoRA's) keeps optimizer memory spikes off a GPU; plain AdamW on CPU.
            "optim": "paged_adamw_8bit" if torch.cuda.is_available() else "adamw_torch",
            "disable_tqdm": True,
            "dataloader_num_workers": 0,
        }

    def fit(
        self,
        trainer: Any,
        progress: ProgressCallback,
        trained_tokens: int | Callable[[], int],
        prompts: list[list[dict[str, Any]]],
        measure_base: bool = False,
    ) -> None:
        """Train (from the resume point), then save the adapter, check it changes answers on a few
        training prompts, and report the result; or, when asked to stop, where the checkpoint is.
        `measure_base`: first report the base model's validation loss (trainer/baseline.py)."""
        if self.stop_requested.is_set():  # asked to stop while loading: nothing new to save
            if self.tracking:
                self.tracking.finish(with_adapter=False)
            step = checkpoint_step(self.resume_from) if self.resume_from else 0
            self.events.stopped(step=step, checkpoint=str(self.resume_from) if self.resume_from else None)
            return
        # TRL casts QLoRA adapters to bf16, but peft loads them from a checkpoint in fp32: training in
        # fp32 from the start makes a resumed run continue exactly as an uninterrupted one would.
        for param in trainer.model.parameters():
            if param.requires_grad:
                param.data = param.data.float()
        if measure_base and self.resume_from is None:  # a resumed job reported it on its first run
            report_base_validation(trainer, self.events, disable_adapter=self.spec.init_adapter is not None)
        started = time.perf_counter()
        trainer.train(resume_from_checkpoint=str(self.resume_from) if self.resume_from else None)
        runtime_s = time.perf_counter() - started
        if callable(trained_tokens):  # counted while training (RFT: as many tokens as it sampled)
            trained_tokens = trained_tokens()
        if self.stop_requested.is_set():
            if self.tracking:
                self.tracking.finish(with_adapter=False)
            self.events.stopped(step=trainer.state.global_step, checkpoint=progress.last_checkpoint)
            return
        self.table.write()
        adapter_dir = self.spec.adapter_dir
        adapter_dir.mkdir(parents=True, exist_ok=True)
        # Only the trained adapter ("default"; DPO adds a frozen "ref" copy), and the tokenizer, so
        # the chat template used in training travels with it.
        trainer.model.save_pretrained(str(adapter_dir), selected_adapters=["default"])
        self.tokenizer.save_pretrained(str(adapter_dir))
        peak = peak_memory_bytes()
        if self.resume_from is None:  # a resumed run's time covers only part of the training
            where = "GPU" if torch.cuda.is_available() else "process"
            self.events.message(
                f"Trained {trained_tokens} tokens in {runtime_s:.1f} s ({trained_tokens / runtime_s:.0f} "
                f"tokens/s); peak {where} memory {peak / 2**30:.2f} GiB"
            )
        self._check_adapter(trainer.model, prompts)
        if self.tracking:
            self.tracking.finish(with_adapter=True)
        self.events.result(
            ResultEvent(
                adapter_dir=str(adapter_dir),
                metrics_csv=str(self.spec.metrics_csv),
                trained_tokens=trained_tokens,
                train_runtime_s=runtime_s,
                peak_memory_bytes=peak,
            )
        )

    def _check_adapter(self, model: Any, prompts: list[list[dict[str, Any]]]) -> None:
        """Greedy answers with and without the adapter: an adapter that changes none of them is
        probably ineffective (too low a learning rate, say), which a user should hear about."""
        if not prompts:
            return
        differ = sum(_answers_differ(model, self.tokenizer, messages) for messages in prompts)
        if differ:
            self.events.message(
                f"Adapter check: greedy answers to {differ} of {len(prompts)} training prompts differ "
                "from the base model's"
            )
        else:
            self.events.message(
                f"Adapter check: the adapter did not change the greedy answers to {len(prompts)} training "
                "prompts; it may have learned little (try more epochs or a higher learning rate)",
                level="warn",
            )


def _answers_differ(model: Any, tokenizer: Any, messages: list[dict[str, Any]], new_tokens: int = 16) -> bool:
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    ).to(model.device)
    settings = {"max_new_tokens": new_tokens, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    model.eval()
    with torch.no_grad():
        tuned = model.generate(**inputs, **settings)
        with model.disable_adapter():
            base = model.generate(**inputs, **settings)
    return not torch.equal(tuned, base)


def peak_memory_bytes() -> int:
    """Peak GPU memory allocated by torch, or (on CPU) the process's peak resident memory."""
    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def start_run(spec: TrainingSpec, events: EventWriter, stop_requested: StopRequest) -> Run:
    set_seed(spec.seed)
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.base_model)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"The base model {spec.base_model} could not be loaded: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # A job's folder holds only its own checkpoints: the latest is where a paused or interrupted
    # run stopped, so a trainer always continues from it.
    resume_from = latest_checkpoint(spec.checkpoints_dir)
    resume_step = checkpoint_step(resume_from) if resume_from else None
    if resume_step is not None:
        events.message(f"Resuming from the checkpoint at step {resume_step}")
    table = MetricsTable(spec.metrics_csv, resume_step)
    tracking = WandbTracking.start(spec, events)
    return Run(spec, events, stop_requested, tokenizer, resume_from, table, tracking=tracking)
