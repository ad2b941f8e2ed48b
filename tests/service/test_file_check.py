"""The gateway's side of file checks: the child's result, its time limit, its memory limit."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from service.jobs.file_check import FileCheckLimits, FileCheckRequest, check_files

GIB = 2**30


def _request(path: Path, tokenizer: Path | None = None) -> FileCheckRequest:
    return FileCheckRequest(str(path), None, "supervised", tokenizer, 2048)


def _chat_file(path: Path, count: int) -> Path:
    record = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path.write_text((json.dumps(record) + "\n") * count)
    return path


def test_a_valid_file_gives_its_stats(tiny_model: Path, tmp_path: Path) -> None:
    limits = FileCheckLimits(memory_bytes=4 * GIB, timeout_s=120)
    result = asyncio.run(check_files(_request(_chat_file(tmp_path / "t.jsonl", 12), tiny_model), limits))
    assert result.problem is None and result.stats is not None
    assert result.stats.n_training_examples == 12 and (result.stats.longest_example_tokens or 0) > 0


def test_the_time_limit_kills_the_check_and_fails_clearly(tmp_path: Path) -> None:
    # 0.05 s is less than the child's interpreter start-up, so the check always runs over.
    limits = FileCheckLimits(memory_bytes=4 * GIB, timeout_s=0.05)
    result = asyncio.run(check_files(_request(_chat_file(tmp_path / "t.jsonl", 12)), limits))
    assert result.stats is None and result.problem is not None
    assert result.problem.code == "invalid_training_file"
    assert "took longer than the time limit for file checks (0.05 s)" in result.problem.message
    assert str(tmp_path) not in result.problem.message


def test_the_memory_limit_fails_the_check_clearly(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"messages": [{"role": "user", "content": "' + b"a" * (120 * 2**20) + b'"}]}\n')
    limits = FileCheckLimits(memory_bytes=256 * 2**20, timeout_s=60)
    result = asyncio.run(check_files(_request(path), limits))
    assert result.problem is not None and result.problem.code == "invalid_training_file"
    assert "within the memory limit for file checks" in result.problem.message
    assert str(tmp_path) not in result.problem.message
