"""Child processes (engines, trainers) with explicit lifetimes: none outlives the gateway, even
after a kill -9, and a signal meant for one never reaches another.

- Each child leads its own process group: a signal to the gateway's group (a terminal's Ctrl-C, a
  service manager) does not reach it, and stopping it can signal its whole group, grandchildren
  included (vLLM's engine core and workers). Trainers and the like also lead their own session, so
  Linux's autogroup scheduling gives each its own share of the CPU against the gateway; engines stay
  in the gateway's session (`serving_process_options`: why there).
- Each child asks the kernel for SIGTERM when the gateway dies (PR_SET_PDEATHSIG), then checks that
  the gateway is still its parent: if the gateway died between fork and that request, nobody would
  ever send the signal, so the child exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with(parent_pid: int, new_group: bool = False) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child between fork and exec: system calls only
        if new_group:  # (uvloop's subprocesses take no `process_group`)
            os.setpgid(0, 0)
        if sys.platform.startswith("linux"):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


def child_process_options(**extra_env: str) -> dict[str, Any]:
    """Keyword arguments for `asyncio.create_subprocess_exec` / `subprocess.Popen`: the gateway's
    environment less its own settings (`OPENTUNE_*`: the API key, database URL and other secrets
    are no business of an engine or a trainer), plus `extra_env`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENTUNE_")}
    return {"start_new_session": True, "preexec_fn": _die_with(os.getpid()), "env": env | extra_env}


def serving_process_options(**extra_env: str) -> dict[str, Any]:
    """As `child_process_options`, for an engine: its own process group, but in the gateway's
    session. vLLM's processes wait for each other by spinning on sched_yield, and under Linux's
    autogroup scheduling (one group per session) a yield only makes way within its own group: with
    the engine in a session of its own, the gateway was kept off the CPU for up to seconds behind
    a yielding vLLM process under load (bench/serving.py; service/engine/cpu_priority.py)."""
    options = child_process_options(**extra_env)
    del options["start_new_session"]
    return options | {"preexec_fn": _die_with(os.getpid(), new_group=True)}


def signal_group(process: asyncio.subprocess.Process, signum: int) -> None:
    """Send `signum` to the child's process group (itself and whatever it started)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


async def stop_process(process: asyncio.subprocess.Process, grace_s: float) -> None:
    """SIGTERM to the child, then SIGKILL to its whole group after `grace_s` seconds or once it
    exits (so no grandchild outlives it)."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), timeout=grace_s)
    signal_group(process, signal.SIGKILL)
    await process.wait()
