"""The python graders' sandbox: the user's `grade(sample, item)` in a child process that sees
almost nothing and can reach nothing (trainer/graders/confinement.py says how), killed at the
wall-clock time limit, at most `max_concurrent` at once per process.

When the host cannot confine a grader (no bwrap, user namespaces refused, no libseccomp),
`availability()` says why and python graders are refused: never run without the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import time
from typing import Any

from trainer.graders.confinement import (
    BWRAP_ENV,
    SandboxLimits,
    bwrap_command,
    pipe_with,
    process_limits,
    seccomp_program,
    site_packages,
)
from trainer.graders.results import GradingFailure

__all__ = ["Sandbox", "SandboxLimits"]

_PROBE_SOURCE = "def grade(sample, item):\n    return 1.0\n"
_RECHECK_AFTER_S = 30.0  # how long a failed probe is believed before the host is probed again


class Sandbox:
    """Runs python graders; one per process (it bounds how many run at once)."""

    def __init__(self, limits: SandboxLimits) -> None:
        self.limits = limits
        self._verdict: tuple[str | None, float] | None = None  # (why not, when), after a probe
        self._slots: asyncio.Semaphore | None = None

    def availability(self) -> str | None:
        """None when python graders can run here, else why not (probes the host once; blocking)."""
        if self._verdict is not None:
            reason, when = self._verdict
            if reason is None or time.monotonic() - when < _RECHECK_AFTER_S:
                return reason
        reason = self._probe()
        self._verdict = (reason, time.monotonic())
        return reason

    async def run(self, source: str, sample: Any, item: Any) -> float:
        """The grader's reward; GradingFailure when it fails, runs too long or uses too much memory."""
        reason = await asyncio.to_thread(self.availability)
        if reason is not None:
            raise GradingFailure("python_grader_server_error", reason, error_type="sandbox_unavailable")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limits.max_concurrent)
        async with self._slots:
            return _reward(await self._run(source, sample, item), self.limits)

    def _payload(self, source: str, sample: Any, item: Any) -> bytes:
        paths = [p for p in site_packages() if os.path.isdir(p)]
        return json.dumps({"source": source, "sample": sample, "item": item, "paths": paths}).encode()

    def _probe(self) -> str | None:
        if shutil.which(self.limits.bwrap) is None:
            return (
                "python graders need bubblewrap (bwrap) to sandbox them, and it is not installed on "
                "this server (Debian/Ubuntu: apt-get install bubblewrap)."
            )
        try:
            program = seccomp_program()
        except (ImportError, RuntimeError, OSError) as exc:
            return f"python graders need libseccomp to sandbox them ({exc})."
        read_end = pipe_with(program)
        try:
            done = subprocess.run(
                bwrap_command(self.limits, read_end),
                input=self._payload(_PROBE_SOURCE, {}, {}),
                capture_output=True,
                pass_fds=(read_end,),
                preexec_fn=process_limits(self.limits),
                env=BWRAP_ENV,
                timeout=max(self.limits.time_limit_s, 30.0),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"python graders cannot be sandboxed on this server: {exc}"
        finally:
            os.close(read_end)
        if _parse(done.stdout, self.limits).get("reward") != 1.0:
            why = done.stderr.decode(errors="replace").strip()[-300:] or f"exit status {done.returncode}"
            return (
                "python graders cannot be sandboxed on this server (bubblewrap failed: "
                f"{why}); it needs unprivileged user namespaces."
            )
        return None

    async def _run(self, source: str, sample: Any, item: Any) -> dict[str, Any]:
        read_end = pipe_with(seccomp_program())
        try:
            process = await asyncio.create_subprocess_exec(
                *bwrap_command(self.limits, read_end),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                pass_fds=(read_end,),
                preexec_fn=process_limits(self.limits),
                env=BWRAP_ENV,
                start_new_session=True,
            )
        finally:
            os.close(read_end)
        try:
            output = await asyncio.wait_for(
                _exchange(process, self._payload(source, sample, item), self.limits.max_output_bytes),
                timeout=self.limits.time_limit_s,
            )
        except TimeoutError:
            raise GradingFailure(
                "python_grader_runtime_error",
                f"The grader did not finish within the time limit ({self.limits.time_limit_s:g} s) "
                "and was stopped.",
            ) from None
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()  # bwrap; --die-with-parent and the PID namespace end the rest
            await process.wait()
        parsed = _parse(output, self.limits)
        if not parsed:
            status = process.returncode
            raise GradingFailure(
                "python_grader_runtime_error",
                f"The grader stopped without a result ({_exit_reason(status)}); the memory limit is "
                f"{self.limits.memory_bytes // 2**20} MB and the time limit "
                f"{self.limits.time_limit_s:g} s.",
            )
        return parsed


async def _exchange(process: asyncio.subprocess.Process, payload: bytes, most: int) -> bytes:
    assert process.stdin is not None and process.stdout is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        process.stdin.write(payload)
        await process.stdin.drain()
    process.stdin.close()
    output = await process.stdout.read(most + 1)  # a grader cannot flood the server's memory
    rest = output
    while rest and len(output) <= most:
        rest = await process.stdout.read(most + 1 - len(output))
        output += rest
    await process.wait()
    return output


def _reward(parsed: dict[str, Any], limits: SandboxLimits) -> float:
    if "error" in parsed:
        raise GradingFailure("python_grader_runtime_error", str(parsed["error"]))
    reward = parsed.get("reward")
    if isinstance(reward, bool) or not isinstance(reward, int | float) or not math.isfinite(reward):
        raise GradingFailure("python_grader_runtime_error", "The grader returned no number.")
    return float(reward)


def _parse(output: bytes, limits: SandboxLimits) -> dict[str, Any]:
    if not output or len(output) > limits.max_output_bytes:
        return {}
    try:
        parsed = json.loads(output)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _exit_reason(status: int | None) -> str:
    if status is not None and status < 0:
        return f"killed by {signal.Signals(-status).name}"
    return f"exit status {status}"
