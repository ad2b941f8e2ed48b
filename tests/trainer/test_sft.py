"""The real trainer process on tool-call data: it trains, reports, and is reproducible."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.trainer.test_formatting import TOOL_CALL_MESSAGES, TOOLS
from trainer.spec import TrainingSpec


def _train(tiny_model: Path, data: Path, out: Path) -> list[dict[str, Any]]:
    spec = TrainingSpec(
        job_id="ftjob-sft",
        base_model=str(tiny_model),
        training_file=data,
        output_dir=out,
        n_epochs=1,
        batch_size=2,
        learning_rate=3e-3,
        seed=7,
    )
    spec.write(out.parent / f"{out.name}.json")
    done = subprocess.run(
        [sys.executable, "-m", "trainer", str(out.parent / f"{out.name}.json")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_tool_call_examples_train_reproducibly(tiny_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "tools.jsonl"
    examples = [{"messages": TOOL_CALL_MESSAGES, "tools": TOOLS}] * 8
    examples += [
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "yo", "weight": 0},
                {"role": "user", "content": "ok"},
                {"role": "assistant", "content": "fine"},
            ]
        }
    ] * 4
    data.write_text("".join(json.dumps(e) + "\n" for e in examples))

    first = _train(tiny_model, data, tmp_path / "a")
    assert first[-1]["event"] == "result" and first[-1]["trained_tokens"] > 0
    losses = [e["train_loss"] for e in first if e["event"] == "metrics"]
    assert len(losses) == 6
    assert any(e.get("message", "").startswith("Adapter check:") for e in first)
    assert (tmp_path / "a" / "adapter" / "adapter_model.safetensors").is_file()

    second = _train(tiny_model, data, tmp_path / "b")
    assert [e["train_loss"] for e in second if e["event"] == "metrics"] == losses, "same seed, same losses"
