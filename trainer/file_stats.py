"""What the gateway needs to know about a job's data files, gathered in one streaming pass.

`python -m trainer.inspect_files` (the child process the gateway runs, see trainer/inspect_files.py)
prints one `InspectionResult` as JSON; the gateway parses it with the same model. So a training file
is parsed once per job, outside the gateway, in memory that follows its longest line.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

from pydantic import BaseModel

from trainer.data import ChatExample, Example, PreferenceExample, iter_examples
from trainer.formatting import longest_example_tokens

# The longest examples by bytes whose tokens are counted: JSON text length predicts tokens well
# enough to find the longest one among a few.
LONGEST_CANDIDATES = 8


class FileProblem(BaseModel):
    """Why the files cannot be trained on, in OpenAI's error shape."""

    code: str
    message: str
    param: str | None = None


class FileStats(BaseModel):
    n_training_examples: int
    n_validation_examples: int | None = None
    # Tokens of the longest training example (each completion capped at max_seq_length), counted
    # with the base model's tokenizer; None when it could not be read (no batch-size planning then).
    longest_example_tokens: int | None = None


class InspectionResult(BaseModel):
    """Exactly one of the two is set."""

    stats: FileStats | None = None
    problem: FileProblem | None = None


class TokenCounter:
    """The base model's tokenizer behind the call shape trainer/formatting.py uses
    (`tokenizer(text, add_special_tokens=False)["input_ids"]`). Reads tokenizer.json with the
    `tokenizers` library (fast, no torch); falls back to transformers for other tokenizer files."""

    def __init__(self, model_dir: Path) -> None:
        self._encode: Callable[[str], list[int]]
        if (model_dir / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            fast = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            self._encode = lambda text: fast.encode(text, add_special_tokens=False).ids
        else:
            from transformers import AutoTokenizer

            slow = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            self._encode = lambda text: list(slow(text, add_special_tokens=False)["input_ids"])

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": self._encode(text)}


def count_examples(path: Path, method: str, param: str) -> int:
    return sum(1 for _ in iter_examples(path, method, param))


def longest_examples(examples: Iterator[tuple[Example, int]], keep: int) -> tuple[int, list[Example]]:
    """How many examples there are, and the `keep` longest (by bytes on their line)."""
    heap: list[tuple[int, int, Example]] = []
    count = 0
    for count, (example, size) in enumerate(examples, start=1):
        item = (size, count, example)
        if len(heap) < keep:
            heapq.heappush(heap, item)
        elif size > heap[0][0]:
            heapq.heapreplace(heap, item)
    return count, [example for _size, _n, example in heap]


def inspect_files(
    training_file: Path,
    validation_file: Path | None,
    method: str,
    tokenizer_dir: Path | None,
    max_seq_length: int,
) -> FileStats:
    """Check both files and gather their stats; raises DataValidationError on the first problem."""
    n_training, longest = longest_examples(
        iter_examples(training_file, method, "training_file"), LONGEST_CANDIDATES
    )
    n_validation = (
        count_examples(validation_file, method, "validation_file") if validation_file is not None else None
    )
    tokens = None
    if tokenizer_dir is not None and tokenizer_dir.is_dir():
        try:
            # One method per file, so the list holds one kind of example, as formatting.py expects.
            same_kind = cast(list[ChatExample] | list[PreferenceExample], longest)
            tokens = longest_example_tokens(TokenCounter(tokenizer_dir), same_kind, max_seq_length)
        except MemoryError:
            raise
        except Exception as exc:  # the server's tokenizer files, not the user's data: plan without
            print(f"Counting tokens failed ({type(exc).__name__}: {exc})", file=sys.stderr)  # noqa: T201
    return FileStats(
        n_training_examples=n_training, n_validation_examples=n_validation, longest_example_tokens=tokens
    )
