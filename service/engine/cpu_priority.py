"""On vLLM's CPU build, the engine core process runs at a lower priority than everything else.

vLLM on CPU always runs the model in a worker process (its OpenMP threads pinned to cores: on a
2-core machine one core, the other left to the rest), and the engine core process waits for each
step's result from that worker by spinning: after every message it calls sched_yield in a loop for
a second (vllm/distributed/device_communicators/shm_broadcast.py, SpinCondition.busy_loop_s). So
under load the engine takes every core, one computing and one spinning. Measured on a 2-core
Linux 6.18 machine (/proc/<tid>/schedstat), the spinning kept runnable tasks off the CPU for up
to 2 s at a time: the gateway, vLLM's own HTTP server and the kernel thread that delivers loopback
packets (ksoftirqd). Streams stalled, then arrived in one burst, and half the load rounds at 16
concurrent streams ran at a fifth of the engine's speed, direct or relayed alike.

Two causes, two fixes, each of which alone ended the stalls (measured on the same machine and
load: every round at full speed, about 1,000 output tokens/s with 16 streams side by side, where
before half the rounds fell to 130-430): a yield only makes way within the yielder's autogroup
(one per session), so engines now run in the gateway's session (service/processes.py); and here,
the spinner runs at nice 10, so it gets only the CPU time nobody else wants, whatever groups the
machine's scheduler uses, while the worker (the model) and the HTTP server keep their priority.

Only the engine core is lowered, after it started: its worker is its child, started before, and
keeps the priority it was born with. Raising a nice value needs no privilege.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

logger = logging.getLogger(__name__)

# vLLM names its processes with setproctitle: "VLLM::EngineCore", "VLLM::Worker".
_ENGINE_CORE_TITLE = b"VLLM::EngineCore"


def lower_engine_core_priority(group_id: int, nice: int) -> bool:
    """Give every thread of the vLLM engine core processes in process group `group_id` (a managed
    engine leads its own: service/processes.py) the priority `nice`. True if one was found
    (it starts a few seconds after vLLM's HTTP server process; by the time the server answers
    health checks it is there)."""
    if not sys.platform.startswith("linux"):
        return False
    found = False
    for pid in _engine_cores(group_id):
        found = True
        with contextlib.suppress(OSError):  # it may exit meanwhile
            for tid in os.listdir(f"/proc/{pid}/task"):
                # Per thread: Linux keeps a nice value per thread; new threads inherit their creator's.
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, int(tid), nice)
            logger.info("vLLM's engine core (pid %d) now runs at nice %d", pid, nice)
    return found


def _engine_cores(group_id: int) -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                # After the command name in parentheses: state, ppid, pgrp, session, ...
                fields = stat.read().rsplit(b")", 1)[1].split()
            if int(fields[2]) != group_id:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if cmdline.read().startswith(_ENGINE_CORE_TITLE):
                    yield int(entry)
        except (OSError, IndexError, ValueError):
            continue  # gone, or not ours to read
