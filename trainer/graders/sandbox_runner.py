"""Runs inside the python graders' sandbox (trainer/graders/sandbox.py passes this file's text to
`python -I -S -c`): stdlib only, and nothing from this project is importable there.

Reads `{"source", "sample", "item", "paths"}` as JSON on stdin, runs the source's
`grade(sample, item)`, and writes one JSON object on the original stdout: `{"reward": float}`, or
`{"error": traceback}`. Whatever the grader prints goes to stderr, so it cannot spoil the result.
"""

import json
import math
import os
import sys
import traceback
from typing import Any


def _result(source: str, sample: Any, item: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__grader__"}
    exec(compile(source, "grader.py", "exec"), namespace)
    grade = namespace.get("grade")
    if not callable(grade):
        raise TypeError("the source defines no function grade(sample, item)")
    value = grade(sample, item)
    try:
        reward = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"grade() returned {type(value).__name__}, not a number") from None
    if isinstance(value, bool) or not math.isfinite(reward):
        raise ValueError(f"grade() returned {value!r}, not a finite number")
    return {"reward": reward}


def _traceback(exc: BaseException) -> str:
    """The traceback from the grader's own frames on (this runner's are no business of its author)."""
    frames = exc.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename != "grader.py":
        frames = frames.tb_next
    return "".join(traceback.format_exception(type(exc), exc, frames))


def main() -> None:
    result_fd = os.dup(1)
    os.dup2(2, 1)  # the grader's prints go to stderr, never into the result
    payload = json.loads(sys.stdin.buffer.read())
    sys.path.extend(payload["paths"])  # third-party packages (read-only), after the stdlib
    try:
        out = _result(payload["source"], payload["sample"], payload["item"])
    except BaseException as exc:  # the grader's own error, for its author
        try:
            out = {"error": _traceback(exc)[-8000:]}
        except BaseException:  # e.g. MemoryError while formatting
            out = {"error": "the grader failed (its traceback could not be formatted)"}
    os.write(result_fd, json.dumps(out).encode())


if __name__ == "__main__":
    main()
