"""A reinforcement fine-tuning job the tiny random-init model measurably learns in minutes on a CPU.

The python grader rewards the share of the answer's characters that are digits (the row's
`alphabet` field, so the grader's `item` is exercised). A random-init model samples nearly uniformly
from its 1024 tokens: about 3% of the characters are digits. The adapter cannot change the final
norm or the output head, which bounds how far it can raise a token's logit (at temperature 1 the
share barely doubled in 32 steps); at temperature 0.5 that bound doubles, and with 8 samples per
prompt GRPO takes the share above 0.7 within 40 steps on every seed tried. tests/trainer/test_rft.py
runs this job and states the measured curves; `python -m bench.rft_reward` reproduces them.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from trainer.spec import ReinforcementSettings, TrainingSpec

DIGITS_GRADER = {
    "type": "python",
    "name": "digits",
    "source": (
        "def grade(sample, item):\n"
        "    text = sample['output_text']\n"
        "    return sum(c in item['alphabet'] for c in text) / max(len(text), 1)\n"
    ),
}
_SUBJECTS = ["The order", "My package", "The weather", "The train", "Our support team", "Alice", "Bob"]
_ASKS = ["How many days?", "Which number?", "What is the total?", "Count them.", "Give the code."]


def rows(count: int, seed: int) -> list[dict[str, Any]]:
    """RFT rows: a user prompt, and fields for the grader (one nested, as real rows have)."""
    rng = random.Random(seed)
    return [
        {
            "messages": [
                {"role": "user", "content": f"{rng.choice(_SUBJECTS)} arrived. {rng.choice(_ASKS)}"}
            ],
            "alphabet": "0123456789",
            "meta": {"id": number, "tags": ["calibration"] * (number % 3)},
        }
        for number in range(count)
    ]


def write_job(tiny_model: Path, folder: Path, seed: int = 1, **options: Any) -> Path:
    """The calibrated job (32 prompts, 4 per step, 8 samples each of 8 tokens, 5 epochs: 40 steps;
    validation on 4 held-out prompts every 8 steps); `options` override spec fields."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (("train.jsonl", rows(32, seed=3)), ("valid.jsonl", rows(4, seed=4))):
        (folder / name).write_text("".join(json.dumps(row) + "\n" for row in data))
    settings = ReinforcementSettings(
        grader=DIGITS_GRADER,
        num_generations=8,
        max_completion_tokens=8,
        temperature=0.5,
        eval_interval=8,
        eval_samples=2,
    )
    fields: dict[str, Any] = {
        "job_id": "ftjob-rft",
        "base_model": str(tiny_model),
        "training_file": folder / "train.jsonl",
        "validation_file": folder / "valid.jsonl",
        "output_dir": folder / "out",
        "method": "reinforcement",
        "n_epochs": 5,
        "batch_size": 4,
        "learning_rate": 1e-2,
        "seed": seed,
        "reinforcement": settings,
    }
    spec_path = folder / "spec.json"
    TrainingSpec(**(fields | options)).write(spec_path)
    return spec_path


def run_trainer(spec_path: Path, timeout: float = 900) -> tuple[int, list[dict[str, Any]], float, str]:
    """`python -m trainer SPEC`: exit status, events, wall seconds, and the end of stderr."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "trainer", str(spec_path)], capture_output=True, text=True, timeout=timeout
    )
    events = [json.loads(line) for line in done.stdout.splitlines()]
    return done.returncode, events, time.perf_counter() - started, done.stderr[-3000:]


def train_rewards(events: list[dict[str, Any]]) -> list[float]:
    return [e["train_reward_mean"] for e in events if e["event"] == "metrics"]


def first_and_last(rewards: list[float], k: int = 5) -> tuple[float, float]:
    return sum(rewards[:k]) / k, sum(rewards[-k:]) / k
