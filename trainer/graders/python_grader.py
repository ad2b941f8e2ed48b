"""`python`: the user's `grade(sample, item) -> float`, checked here and run in the sandbox
(trainer/graders/sandbox.py). The source is parsed, never run, in this process."""

from __future__ import annotations

import ast
from typing import Any

from trainer.graders.models import PythonGrader
from trainer.graders.results import GraderError, GradingFailure
from trainer.graders.sandbox import Sandbox
from trainer.graders.templates import Sample


def validate(grader: PythonGrader, sandbox: Sandbox | None, param: str) -> None:
    try:
        tree = ast.parse(grader.source, filename="grader.py")
    except SyntaxError as exc:
        raise GraderError(f"The python grader's source does not compile: {exc}", f"{param}.source") from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        raise GraderError(f"The python grader's source cannot be parsed: {exc}", f"{param}.source") from None
    if not any(_binds_grade(node) for node in tree.body):
        raise GraderError(
            "The python grader's source must define a function grade(sample, item) returning a float.",
            f"{param}.source",
        )
    reason = "this server has no sandbox for python graders." if sandbox is None else sandbox.availability()
    if reason is not None:
        raise GraderError(f"Python graders cannot run here: {reason}", f"{param}.type")


async def score(grader: PythonGrader, sample: Sample, item: Any, sandbox: Sandbox | None) -> float:
    if sandbox is None:
        raise GradingFailure("python_grader_server_error", "no sandbox", error_type="sandbox_unavailable")
    return await sandbox.run(grader.source, sample.as_dict(), item)


def _binds_grade(node: ast.stmt) -> bool:
    if isinstance(node, ast.FunctionDef):
        return node.name == "grade"
    if isinstance(node, ast.Assign):
        return any(isinstance(target, ast.Name) and target.id == "grade" for target in node.targets)
    if isinstance(node, ast.ImportFrom | ast.Import):
        return any((alias.asname or alias.name) == "grade" for alias in node.names)
    return False
