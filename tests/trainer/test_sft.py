"""The real trainer process on tool-call data: it trains, reports, and is reproducible."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.trainer.test_formatting import TOOL_CALL_MESSAGES, TOOLS
from trainer.spec import TrainingSpec


def write_spec(tiny_model: Path, data: Path, out: Path, **options: Any) -> Path:
    """A spec for the tiny model; `options` override the defaults below."""
    spec_path = out.parent / f"{out.name}.json"
    TrainingSpec(
        job_id="ftjob-sft",
        base_model=str(tiny_model),
        training_file=data,
        output_dir=out,
        **({"n_epochs": 1, "batch_size": 2, "learning_rate": 3e-3, "seed": 7} | options),
    ).write(spec_path)
    return spec_path


def _train(
    tiny_model: Path, data: Path, out: Path, cache: Path | None = None, **options: Any
) -> list[dict[str, Any]]:
    spec_path = write_spec(tiny_model, data, out, token_cache_dir=cache, **options)
    done = subprocess.run(
        [sys.executable, "-m", "trainer", str(spec_path)],
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

    first = _train(tiny_model, data, tmp_path / "a", cache=tmp_path / "cache")
    assert first[-1]["event"] == "result" and first[-1]["trained_tokens"] > 0
    losses = [e["train_loss"] for e in first if e["event"] == "metrics"]
    assert len(losses) == 6
    assert any(e.get("message", "").startswith("Adapter check:") for e in first)
    assert (tmp_path / "a" / "adapter" / "adapter_model.safetensors").is_file()

    second = _train(tiny_model, data, tmp_path / "b", cache=tmp_path / "cache")
    assert "Tokenized training data found in the cache" in [e.get("message") for e in second]
    assert [e["train_loss"] for e in second if e["event"] == "metrics"] == losses, "same seed, same losses"


def test_padding_free_batches_train_exactly_like_padded_ones(tiny_model: Path, tmp_path: Path) -> None:
    """Examples of different lengths laid end to end in one row must not attend to each other: the
    loss of one batch holding all of them is then the padded batch's loss."""
    data = tmp_path / "mixed.jsonl"
    examples: list[dict[str, Any]] = [{"messages": TOOL_CALL_MESSAGES, "tools": TOOLS}]
    examples += [
        {"messages": [{"role": "user", "content": "word " * n}, {"role": "assistant", "content": "ok " * n}]}
        for n in (1, 2, 3, 5, 8, 13, 21, 34, 40)
    ]
    data.write_text("".join(json.dumps(e) + "\n" for e in examples))

    def first_loss(**options: Any) -> float:
        events = _train(
            tiny_model,
            data,
            tmp_path / f"padding-free-{options['padding_free']}",
            batch_size=len(examples),
            **options,
        )
        return float(next(e["train_loss"] for e in events if e["event"] == "metrics"))

    padded = first_loss(padding_free=False)
    assert first_loss(padding_free=True) == pytest.approx(padded, rel=1e-5)


def test_stop_and_resume_matches_an_uninterrupted_run(tiny_model: Path, tmp_path: Path) -> None:
    """SIGTERM (pause) checkpoints mid-epoch; a new trainer continues to the same steps and losses."""
    from tests.strict_format import jsonl, training_examples

    data = tmp_path / "train.jsonl"
    data.write_bytes(jsonl(training_examples(12)))
    straight = [e for e in _train(tiny_model, data, tmp_path / "straight") if e["event"] == "metrics"]

    spec_path = write_spec(tiny_model, data, tmp_path / "paused")
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer", str(spec_path)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    for line in process.stdout:
        if json.loads(line).get("step") == 2:
            process.terminate()  # SIGTERM, as pause and cancel send
            break
    remaining = [json.loads(line) for line in process.stdout]
    assert process.wait(timeout=120) == 0
    assert remaining[-1]["event"] == "stopped" and remaining[-1]["checkpoint"]

    resumed = _train(tiny_model, data, tmp_path / "paused")
    assert any(e.get("message", "").startswith("Resuming from the checkpoint at step") for e in resumed)
    resumed_metrics = [e for e in resumed if e["event"] == "metrics"]
    assert resumed_metrics[-1]["step"] == straight[-1]["step"] == 6
    by_step = {e["step"]: e["train_loss"] for e in straight}
    assert all(by_step[e["step"]] == e["train_loss"] for e in resumed_metrics)


def test_unloadable_base_model_is_a_clear_job_error(tmp_path: Path) -> None:
    from tests.strict_format import jsonl, training_examples

    data = tmp_path / "train.jsonl"
    data.write_bytes(jsonl(training_examples(10)))
    spec_path = tmp_path / "spec.json"
    TrainingSpec(
        job_id="ftjob-x",
        base_model=str(tmp_path / "no-model-here"),
        training_file=data,
        output_dir=tmp_path / "out",
        n_epochs=1,
        batch_size=1,
        learning_rate=1e-4,
    ).write(spec_path)
    done = subprocess.run([sys.executable, "-m", "trainer", str(spec_path)], capture_output=True, text=True)
    assert done.returncode == 1
    error = json.loads(done.stdout.splitlines()[-1])
    assert error["event"] == "error" and error["code"] == "base_model_unavailable"
    assert "no-model-here" in error["message"]


def test_examples_cut_before_any_assistant_token_are_left_out(tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from trainer.data import DataValidationError
    from trainer.sft import build_dataset

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    long_prompt = {
        "messages": [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]
    }
    short = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(e) + "\n" for e in [long_prompt] * 3 + [short] * 9))
    built = build_dataset(tokenizer, data, "training_file", 64, None)
    assert (len(built.dataset), built.truncated, built.left_out) == (9, 3, 3)

    data.write_text("".join(json.dumps(long_prompt) + "\n" for _ in range(12)))
    with pytest.raises(DataValidationError) as refused:
        build_dataset(tokenizer, data, "training_file", 64, None)
    assert refused.value.code == "invalid_training_file" and "max_seq_length" in refused.value.message


def test_out_of_memory_is_a_job_error_with_advice(tiny_model: Path, tmp_path: Path) -> None:
    """A GPU's out-of-memory error (raised here in its place: no GPU) reaches the job as advice."""
    from tests.strict_format import jsonl, training_examples

    data = tmp_path / "train.jsonl"
    data.write_bytes(jsonl(training_examples(10)))
    spec_path = write_spec(tiny_model, data, tmp_path / "out", batch_size=4, learning_rate=1e-4)
    program = (
        "import sys, torch, trainer.sft\n"
        "def out_of_memory(*args):\n"
        "    raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')\n"
        "trainer.sft.run_sft = out_of_memory\n"
        "from trainer.__main__ import main\n"
        f"sys.exit(main([{str(spec_path)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    error = json.loads(done.stdout.splitlines()[-1])
    assert error["event"] == "error" and error["code"] == "out_of_memory"
    assert "batch size 4" in error["message"] and "smaller batch_size" in error["message"]
