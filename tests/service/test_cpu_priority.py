"""service/engine/cpu_priority.py: the engine core of one engine's process group, every thread of
it, and nothing else, gets the lower priority."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.engine.cpu_priority import lower_engine_core_priority

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

# A stand-in engine core: a process titled as vLLM titles it, with a few threads.
_THREADED = "import threading, time; [threading.Thread(target=time.sleep, args=(60,), daemon=True).start() for _ in range(3)]; time.sleep(60)"  # noqa: E501


def _group(script: str) -> subprocess.Popen[bytes]:
    """A process group as an engine's (service/processes.py): its leader and what it starts."""
    return subprocess.Popen(["bash", "-c", script], process_group=0)


def _titled(pid: int, title: str) -> list[int]:
    """Processes of process group `pid` whose command line starts with `title`."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pid and (proc / "cmdline").read_bytes().startswith(title.encode()):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def _nice_values(pid: int) -> set[int]:
    return {os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir(f"/proc/{pid}/task")}


@pytest.fixture
def groups() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        os.killpg(process.pid, 9)
        process.wait()


def _wait_for(pid: int, title: str, threads: int = 1) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = _titled(pid, title)
        if found and len(os.listdir(f"/proc/{found[0]}/task")) >= threads:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no {title} in process group {pid}")


def test_only_the_engine_core_of_the_given_process_group_is_lowered(
    groups: list[subprocess.Popen[bytes]],
) -> None:
    engine = _group(
        f"exec -a VLLM::EngineCore {sys.executable} -c '{_THREADED}' & exec -a VLLM::Worker sleep 60 & wait"
    )
    other = _group("exec -a VLLM::EngineCore sleep 60 & wait")  # another engine's
    groups += [engine, other]
    core = _wait_for(engine.pid, "VLLM::EngineCore", threads=4)
    worker = _wait_for(engine.pid, "VLLM::Worker")
    elsewhere = _wait_for(other.pid, "VLLM::EngineCore")

    assert lower_engine_core_priority(engine.pid, 10)

    assert _nice_values(core) == {10}  # every thread, not only the main one
    assert _nice_values(worker) == {0}
    assert _nice_values(engine.pid) == {0}
    assert _nice_values(elsewhere) == {0}


def test_a_group_without_an_engine_core_yet_says_so(groups: list[subprocess.Popen[bytes]]) -> None:
    starting = _group("exec -a VLLM::Worker sleep 60 & wait")
    groups.append(starting)
    _wait_for(starting.pid, "VLLM::Worker")
    assert not lower_engine_core_priority(starting.pid, 10)
