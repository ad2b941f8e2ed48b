"""Validating a job's data files in a child process (`python -m trainer.inspect_files`).

Training files are untrusted: parsing one in the gateway once cost 6.5 GiB and 40 s for a valid
512 MB file, and a hostile one raised exceptions that stopped the scheduler for everyone. The child
parses both files once, under an address-space limit, and is killed after a time limit; whatever
goes wrong with it (a crash, the memory limit, the time limit, garbage on stdout) becomes a clear
`invalid_training_file` problem for that job alone. Messages never show server paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.processes import child_process_options, stop_process
from trainer import storage
from trainer.file_stats import FileProblem, InspectionResult

logger = logging.getLogger(__name__)

# Seconds a child gets after SIGTERM (on timeout or shutdown) before its group is killed.
_STOP_GRACE_S = 2.0
_CODE = "invalid_training_file"


@dataclass(frozen=True)
class FileCheckRequest:
    training_file: str  # storage locations (trainer/storage.py); remote ones are copied here first
    validation_file: str | None
    method: str
    tokenizer_dir: Path | None  # the base model's folder, to count tokens (None: not counted)
    max_seq_length: int
    grader: dict[str, Any] | None = None  # a reinforcement job's: its templates are checked on the rows


@dataclass(frozen=True)
class FileCheckLimits:
    memory_bytes: int
    timeout_s: float


def _command(request: FileCheckRequest, limits: FileCheckLimits) -> list[str]:
    command = [sys.executable, "-m", "trainer.inspect_files", "--training-file", str(request.training_file)]
    if request.validation_file is not None:
        command += ["--validation-file", str(request.validation_file)]
    if request.tokenizer_dir is not None:
        command += ["--tokenizer", str(request.tokenizer_dir)]
    command += ["--method", request.method, "--max-seq-length", str(request.max_seq_length)]
    if request.grader is not None:
        command += ["--grader-json", json.dumps(request.grader)]
    return [*command, "--memory-limit-bytes", str(limits.memory_bytes)]


async def check_files(request: FileCheckRequest, limits: FileCheckLimits) -> InspectionResult:
    """The child's result: the files' stats, or the problem that fails the job."""
    with contextlib.ExitStack() as copies:
        # Files in object storage are checked from a local copy, fetched here rather than in the
        # child: its memory limit is for the file's content, not for an S3 client's threads.
        local = await asyncio.to_thread(_local_files, request, copies)
        return await _check(local, limits)


def _local_files(request: FileCheckRequest, copies: contextlib.ExitStack) -> FileCheckRequest:
    def local(location: str) -> str:
        return str(copies.enter_context(storage.local_copy(location)))

    training = local(request.training_file)
    validation = local(request.validation_file) if request.validation_file else None
    return dataclasses.replace(request, training_file=training, validation_file=validation)


async def _check(request: FileCheckRequest, limits: FileCheckLimits) -> InspectionResult:
    process = await asyncio.create_subprocess_exec(
        *_command(request, limits),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        **child_process_options(PYTHONUNBUFFERED="1"),
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=limits.timeout_s)
    except TimeoutError:
        return _problem(
            f"Validating the training file took longer than the time limit for file checks "
            f"({limits.timeout_s:g} s). Use a smaller file."
        )
    finally:
        await stop_process(process, _STOP_GRACE_S)  # and whatever it started, in every case
    return _parse(process.returncode, stdout, stderr, limits)


def _parse(returncode: int | None, stdout: bytes, stderr: bytes, limits: FileCheckLimits) -> InspectionResult:
    lines = stdout.strip().splitlines()
    try:
        result = InspectionResult.model_validate_json(lines[-1]) if lines else None
    except ValidationError:
        result = None
    if returncode == 0 and result is not None and (result.stats is None) != (result.problem is None):
        return result
    # Details (which may name server paths) go to the server's log, not to the user.
    logger.warning("File check exited with %s: %s", returncode, stderr[-2000:].decode(errors="replace"))
    if returncode is not None and returncode < 0:
        return _problem(
            "The training file could not be validated: the check was stopped (signal "
            f"{-returncode}), most likely at the memory limit for file checks "
            f"({limits.memory_bytes / 2**30:.1f} GiB). Split very long examples or use a smaller file."
        )
    return _problem("The training file could not be validated: the check failed on its content.")


def _problem(message: str) -> InspectionResult:
    return InspectionResult(problem=FileProblem(code=_CODE, message=message, param="training_file"))
