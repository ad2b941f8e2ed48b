"""Reinforcement fine-tuning through the real trainer process: a stopped job resumes.

That GRPO raises the grader's reward is tested once, through the SDK, with tests/rft_job.py's
calibrated job (tests/e2e/test_reinforcement.py): it is the suite's longest job.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.rft_job import run_trainer, write_job
from trainer.spec import ReinforcementSettings


def _metrics(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "metrics"]


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
