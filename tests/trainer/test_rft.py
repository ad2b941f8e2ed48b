"""Reinforcement fine-tuning through the real trainer process: GRPO raises the grader's reward.

The job is tests/rft_job.py's, calibrated with bench/rft_reward.py. Mean reward of the first and
last 5 of its 40 steps, seeds 1-5: 0.16 -> 0.99, 0.04 -> 0.99, 0.03 -> 0.92, 0.03 -> 0.97,
0.03 -> 0.73 (margins 0.70 to 0.96); the same seed gives the same curve on the same machine.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.rft_job import first_and_last, run_trainer, train_rewards, write_job
from trainer.spec import ReinforcementSettings

# Well below the smallest calibrated margin (0.70), far above the first steps' noise (about 0.02).
MIN_MARGIN = 0.3


def _metrics(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "metrics"]


def test_grpo_raises_the_mean_reward(tiny_model: Path, tmp_path: Path) -> None:
    status, events, wall_s, stderr = run_trainer(write_job(tiny_model, tmp_path / "job"))
    assert status == 0, stderr
    assert events[-1]["event"] == "result", events[-3:]
    assert events[-1]["trained_tokens"] > 0
    adapter = Path(events[-1]["adapter_dir"])
    assert (adapter / "adapter_model.safetensors").is_file()

    metrics = _metrics(events)
    assert [m["step"] for m in metrics] == list(range(1, 41))  # 32 prompts / 4 per step x 5 epochs
    rewards = train_rewards(events)
    assert all(0.0 <= r <= 1.0 for r in rewards)
    first, last = first_and_last(rewards)
    assert last > first + MIN_MARGIN, (first, last, rewards, wall_s)

    # Validation every 8 steps (eval_interval), which is also the last step.
    valid = {m["step"]: m["valid_reward_mean"] for m in metrics if m["valid_reward_mean"] is not None}
    assert sorted(valid) == [8, 16, 24, 32, 40]
    assert valid[40] > first + MIN_MARGIN, valid

    checkpoints = [e for e in events if e["event"] == "checkpoint"]
    assert [c["step"] for c in checkpoints] == [8, 16, 24, 32, 40]
    assert checkpoints[-1]["metrics"]["train_reward_mean"] == rewards[-1]
    assert checkpoints[-1]["metrics"]["valid_reward_mean"] == valid[40]
    with Path(events[-1]["metrics_csv"]).open() as handle:
        table = list(csv.DictReader(handle))
    assert [float(row["train_reward_mean"]) for row in table] == rewards
    # 40 steps of 4 prompts x 8 samples, and 5 evaluations of 4 prompts x 2 samples.
    assert "The grader scored 1320 samples" in [e.get("message") for e in events]


def test_stopped_rft_resumes_from_its_checkpoint(tiny_model: Path, tmp_path: Path) -> None:
    """SIGTERM after the first step: a checkpoint, then a second trainer continues from it."""
    settings = ReinforcementSettings(
        grader={
            "type": "string_check",
            "name": "seven",
            "input": "{{sample.output_text}}",
            "reference": "7",
            "operation": "like",
        },
        num_generations=2,
        max_completion_tokens=4,
    )
    spec_path = write_job(
        tiny_model, tmp_path / "job", n_epochs=1, batch_size=8, reinforcement=settings, validation_file=None
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer", str(spec_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    first: list[dict[str, Any]] = []
    for line in process.stdout:
        first.append(json.loads(line))
        if first[-1]["event"] == "metrics":
            process.send_signal(signal.SIGTERM)
            break
    first += [json.loads(line) for line in process.stdout]
    assert process.wait(timeout=300) == 0
    assert first[-1]["event"] == "stopped" and first[-1]["checkpoint"], first[-3:]

    status, events, _wall_s, stderr = run_trainer(spec_path)
    assert status == 0, stderr
    assert any(e.get("message", "").startswith("Resuming from the checkpoint at step") for e in events)
    steps = [m["step"] for m in _metrics(events)]
    assert steps and steps[-1] == 4 and steps[0] > 1, steps  # 32 prompts / 8 per step
    assert events[-1]["event"] == "result"
