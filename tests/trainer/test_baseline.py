"""The base model's validation loss (trainer/baseline.py): reported once, before the first step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.strict_format import jsonl, training_examples
from tests.trainer.test_sft import write_spec


def _events(spec_path: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "trainer", str(spec_path)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_the_base_validation_loss_comes_first_and_only_once(tiny_model: Path, tmp_path: Path) -> None:
    train, valid = tmp_path / "train.jsonl", tmp_path / "valid.jsonl"
    train.write_bytes(jsonl(training_examples(10)))
    valid.write_bytes(jsonl(training_examples(4, seed=3)))
    spec = write_spec(tiny_model, train, tmp_path / "out", validation_file=valid, evaluations_per_job=1)

    events = _events(spec)
    kinds = [e["event"] for e in events]
    assert kinds.count("base_validation") == 1
    assert kinds.index("base_validation") < kinds.index("metrics"), "measured before the first step"
    base = next(e for e in events if e["event"] == "base_validation")
    last = [e for e in events if e["event"] == "metrics" and "valid_loss" in e][-1]
    assert base["valid_mean_token_accuracy"] is not None
    # A random-init model on a 1024-token vocabulary is near log(1024) = 6.9; one epoch learns.
    assert base["valid_loss"] > last["valid_loss"] > 0
    assert [e["step"] for e in events if e["event"] == "metrics"] == [1, 2, 3, 4, 5], "no step-0 metrics"

    # The same job again continues from its last checkpoint: its base was measured the first time.
    again = _events(spec)
    assert "base_validation" not in [e["event"] for e in again]
    assert any(e.get("message", "").startswith("Resuming from the checkpoint") for e in again)
