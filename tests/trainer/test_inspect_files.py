"""`python -m trainer.inspect_files`: one parse of the files, one JSON result on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tokenizers import Tokenizer

from trainer.file_stats import InspectionResult

MIB = 2**20


def _inspect(*args: str) -> tuple[InspectionResult, subprocess.CompletedProcess[str]]:
    command = [sys.executable, "-m", "trainer.inspect_files", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return InspectionResult.model_validate_json(done.stdout), done


def _chat(user: str) -> str:
    return json.dumps(
        {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": "ok"}]}
    )


def test_stats_count_examples_and_the_longest_one_in_tokens(tiny_model: Path, tmp_path: Path) -> None:
    training = tmp_path / "train.jsonl"
    training.write_text("\n".join(_chat("word " * (i + 1)) for i in range(30)) + "\n")
    validation = tmp_path / "valid.jsonl"
    validation.write_text("\n".join(_chat("hi") for _ in range(4)) + "\n")
    result, _ = _inspect(
        "--training-file", str(training), "--validation-file", str(validation), "--tokenizer", str(tiny_model)
    )
    assert result.problem is None and result.stats is not None
    assert (result.stats.n_training_examples, result.stats.n_validation_examples) == (30, 4)
    longest = json.dumps([json.loads(_chat("word " * 30))["messages"], None])
    expected = len(Tokenizer.from_file(str(tiny_model / "tokenizer.json")).encode(longest).ids)
    assert result.stats.longest_example_tokens == expected

    capped, _ = _inspect(
        "--training-file", str(training), "--tokenizer", str(tiny_model), "--max-seq-length", "16"
    )
    assert capped.stats is not None and capped.stats.longest_example_tokens == 16


def test_a_bad_validation_file_is_reported_as_such(tmp_path: Path) -> None:
    training = tmp_path / "train.jsonl"
    training.write_text("\n".join(_chat("q") for _ in range(10)) + "\n")
    validation = tmp_path / "valid.jsonl"
    validation.write_text('{"messages": [{"role": [], "content": "x"}]}\n')
    result, _ = _inspect("--training-file", str(training), "--validation-file", str(validation))
    assert result.problem is not None
    assert (result.problem.code, result.problem.param) == ("invalid_validation_file", "validation_file")
    assert "Example 1, message 1" in result.problem.message and str(tmp_path) not in result.problem.message


def test_the_memory_limit_ends_in_a_clear_error(tmp_path: Path) -> None:
    training = tmp_path / "train.jsonl"
    with training.open("wb") as out:
        out.write(b'{"messages": [{"role": "user", "content": "' + b"a" * (120 * MIB) + b'"}]}\n')
    result, _ = _inspect("--training-file", str(training), "--memory-limit-bytes", str(256 * MIB))
    assert result.problem is not None and result.problem.code == "invalid_training_file"
    assert "memory limit for file checks (0.2 GiB)" in result.problem.message
    # Within a larger limit the same line is read and checked (it has no assistant message).
    roomy, _ = _inspect("--training-file", str(training), "--memory-limit-bytes", str(2048 * MIB))
    assert roomy.problem is not None and "Example 1: no assistant message" in roomy.problem.message


def _prompt(user: str, **fields: object) -> str:
    return json.dumps({"messages": [{"role": "user", "content": user}], **fields})


def test_a_reinforcement_grader_is_checked_on_the_first_rows(tiny_model: Path, tmp_path: Path) -> None:
    training = tmp_path / "train.jsonl"
    training.write_text("\n".join(_prompt(f"q{i}", answer=str(i)) for i in range(12)) + "\n")
    grader = {
        "type": "string_check",
        "name": "exact",
        "input": "{{sample.output_text}}",
        "reference": "{{item.answer}}",
        "operation": "eq",
    }
    common = ["--training-file", str(training), "--method", "reinforcement", "--tokenizer", str(tiny_model)]
    result, _ = _inspect(*common, "--grader-json", json.dumps(grader))
    assert result.problem is None and result.stats is not None and result.stats.n_training_examples == 12

    missing = {**grader, "reference": "{{item.solution}}"}
    result, _ = _inspect(*common, "--grader-json", json.dumps(missing))
    assert result.problem is not None and result.problem.param == "training_file"
    assert "line 1" in result.problem.message and "item.solution" in result.problem.message

    python = {"type": "python", "name": "p", "source": "def grade(s, i):\n    return {{'x': 1}}['x']"}
    result, _ = _inspect(*common, "--grader-json", json.dumps(python))  # code is not run, nor parsed
    assert result.problem is None
