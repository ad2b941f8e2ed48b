"""`python -m trainer.inspect_files --training-file PATH ...`: validate a job's data files and print
one JSON line, an `InspectionResult` (trainer/file_stats.py): the stats or the problem.

The gateway runs this as a child process so that a hostile file costs a child, not the gateway: the
child caps its own address space (`--memory-limit-bytes`) before reading anything, and the gateway
kills it after a time limit. Exit status 0 whenever a result was printed, bad file or not.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from pathlib import Path

from trainer.data import DataValidationError, ReinforcementExample, iter_examples
from trainer.file_stats import FileProblem, InspectionResult, inspect_files
from trainer.grader_check import first_rows_problem

_CODE = "invalid_training_file"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m trainer.inspect_files", description=__doc__)
    parser.add_argument("--training-file", type=Path, required=True)
    parser.add_argument("--validation-file", type=Path)
    parser.add_argument("--method", choices=("supervised", "dpo", "reinforcement"), default="supervised")
    parser.add_argument("--grader-json", help="a reinforcement job's grader, checked on the first rows")
    parser.add_argument("--tokenizer", type=Path, help="base model folder, to count tokens")
    parser.add_argument("--max-seq-length", type=int, default=2048)
    parser.add_argument("--memory-limit-bytes", type=int, help="address-space limit (RLIMIT_AS)")
    return parser.parse_args(argv)


def limit_memory(limit_bytes: int) -> None:
    """Cap this process's address space: past it allocations fail (MemoryError) instead of the
    machine swapping or the kernel's OOM killer picking a victim."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit_bytes = min(limit_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, hard))


def inspect(args: argparse.Namespace) -> InspectionResult:
    try:
        stats = inspect_files(
            args.training_file, args.validation_file, args.method, args.tokenizer, args.max_seq_length
        )
        if args.grader_json:
            examples = (
                example for example, _ in iter_examples(args.training_file, args.method, "training_file")
            )
            rows = (example for example in examples if isinstance(example, ReinforcementExample))
            if problem := first_rows_problem(rows, json.loads(args.grader_json)):
                return InspectionResult(
                    problem=FileProblem(code=_CODE, message=problem, param="training_file")
                )
    except DataValidationError as exc:
        return InspectionResult(problem=FileProblem(code=exc.code, message=exc.message, param=exc.param))
    except MemoryError:
        limit = f" ({args.memory_limit_bytes / 2**30:.1f} GiB)" if args.memory_limit_bytes else ""
        message = (
            "The training file could not be validated within the memory limit for file checks"
            f"{limit}: a line holds more data than can be read. Split very long examples."
        )
        return InspectionResult(problem=FileProblem(code="invalid_training_file", message=message))
    return InspectionResult(stats=stats)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.memory_limit_bytes:
        limit_memory(args.memory_limit_bytes)
    # The result goes to the real stdout; anything a library prints goes to stderr.
    result_fd = os.dup(1)
    os.dup2(2, 1)
    result = inspect(args)
    with os.fdopen(result_fd, "w") as out:
        out.write(result.model_dump_json(exclude_none=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
