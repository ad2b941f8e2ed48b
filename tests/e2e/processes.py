"""The processes under a test's server, from /proc: what it started, and whether they still run."""

from __future__ import annotations

import contextlib
from pathlib import Path


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid` (engine, its engine core and workers, trainers), by command line."""
    parents: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            # The command name (field 2) may hold spaces and parentheses: split after it.
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {p: command_line(p) for p in found}


def command_line(pid: int) -> str:
    try:
        raw = (Path("/proc") / str(pid) / "cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def still_running(processes: dict[int, str]) -> dict[int, str]:
    """Those of `processes` still alive with the same command line (not reaped zombies, not reused pids)."""
    alive = {}
    for pid, command in processes.items():
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and command_line(pid) == command:
            alive[pid] = command
    return alive


def engine_pid(port: int) -> int:
    """The managed vLLM server listening on `port` (its engine core and workers are below it)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"vllm.entrypoints.openai.api_server" in cmdline and str(port).encode() in cmdline:
                return int(proc.name)
    raise AssertionError(f"no engine on port {port}")


def engine_nice_values(port: int) -> dict[str, set[int]]:
    """The nice values of the threads of the managed vLLM on `port`, by process: "server" (its HTTP
    server), "VLLM::EngineCore", "VLLM::Worker" (service/engine/cpu_priority.py lowers the engine
    core's)."""
    root = engine_pid(port)
    values: dict[str, set[int]] = {}
    for pid, command in {root: "server", **descendants(root)}.items():
        name = command.split(" ")[0] if command.startswith("VLLM::") else "server"
        with contextlib.suppress(OSError):
            for task in (Path("/proc") / str(pid) / "task").iterdir():
                nice = int((task / "stat").read_text().rsplit(")", 1)[1].split()[16])
                values.setdefault(name, set()).add(nice)
    return values
