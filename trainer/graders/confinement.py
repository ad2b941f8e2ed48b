"""How the python graders' sandbox confines a grader (trainer/graders/sandbox.py runs it).

The child runs under bubblewrap (`bwrap`, Debian's `bubblewrap`), which works the same as root and
as an ordinary user wherever Linux user namespaces are allowed:
- its own user, network, PID, IPC, UTS and cgroup namespaces: no network at all (a loopback that
  is down, no other interface), no other process to see or signal, uid 65534 with no
  capabilities, and no further user namespaces;
- a file system of its own: an empty root with, read-only, only /usr, the Python installation and
  the site-packages this server runs with (so graders can import numpy, rapidfuzz, ...), a fresh
  /proc and minimal /dev, and a small writable /tmp as its working directory. The data folder (and
  anything else in `hidden_paths`) is covered by an empty tmpfs in case it lies under one of those;
- a clean environment for bwrap and the grader, `python -I -S` (no site, no user paths);
- a seccomp filter (libseccomp through pyseccomp) refusing new processes (fork, vfork, clone other
  than threads) and sockets other than AF_UNIX, so a fork bomb cannot outrun the limits below;
- limits: CPU time and address space (RLIMIT_CPU, RLIMIT_AS), file size, no core dumps; and the
  sandbox dies with its parent (PR_SET_PDEATHSIG, bwrap's --die-with-parent).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import math
import os
import resource
import shutil
import signal
import socket
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

RUNNER = (Path(__file__).with_name("sandbox_runner.py")).read_text()
# bwrap's own environment: its process inside the sandbox (PID 1 there) keeps it, readable in
# /proc/1/environ, so it must not be the server's (API keys, database URL).
BWRAP_ENV = {"PATH": "/usr/bin:/bin"}
_CLONE_THREAD = 0x00010000
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class SandboxLimits:
    time_limit_s: float = 10.0
    memory_bytes: int = 512 * 2**20
    max_concurrent: int = 2
    hidden_paths: tuple[Path, ...] = ()  # never readable inside (the server's data folder)
    bwrap: str = "bwrap"
    tmp_bytes: int = 64 * 2**20
    max_output_bytes: int = 64 * 1024
    extra_binds: tuple[Path, ...] = field(default=())  # more read-only folders (tests)


def bwrap_command(limits: SandboxLimits, seccomp_fd: int) -> list[str]:
    """The bwrap command line: the sandbox's namespaces, file system and the runner."""
    python = os.path.realpath(sys.executable)
    bwrap = shutil.which(limits.bwrap) or limits.bwrap  # run with BWRAP_ENV's PATH, not ours
    command = [bwrap, "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net"]
    command += ["--unshare-uts", "--unshare-cgroup-try", "--disable-userns", "--uid", "65534"]
    command += ["--gid", "65534", "--die-with-parent", "--new-session", "--hostname", "grader"]
    command += ["--clearenv", "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8"]
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        command += ["--setenv", variable, "1"]  # thread pools sized to the memory limit
    # /tmp first: a read-only bind below it (a virtual environment in /tmp) must land on top of it.
    command += ["--proc", "/proc", "--dev", "/dev", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]
    bound = _read_only_paths(python, limits.extra_binds)
    for path in ("/lib", "/lib64", "/bin", "/sbin"):
        if os.path.islink(path):  # merged /usr: the same links inside
            command += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            bound.append(path)
    for path in _outermost(bound):
        command += ["--ro-bind", path, path]
    if os.path.isfile("/etc/ld.so.cache"):
        command += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    for hidden in limits.hidden_paths:
        path = os.path.realpath(hidden)
        if any(_within(path, b) for b in bound) and os.path.isdir(path):
            command += ["--tmpfs", path]
    command += ["--chdir", "/tmp", "--seccomp", str(seccomp_fd)]
    return [*command, "--", python, "-I", "-S", "-B", "-c", RUNNER]


def process_limits(limits: SandboxLimits) -> Callable[[], None]:
    cpu_s = math.ceil(limits.time_limit_s) + 1
    # Looked up before the fork: loading a library in the child of a threaded server can deadlock.
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None

    def preexec() -> None:  # between fork and exec: system calls only
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.tmp_bytes, limits.tmp_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if prctl is not None:  # the sandbox ends with the server
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return preexec


@functools.cache
def seccomp_program() -> bytes:
    """The compiled seccomp filter (cBPF, as bwrap's --seccomp takes it)."""
    import pyseccomp as seccomp

    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    refused = seccomp.ERRNO(errno.EPERM)
    for name in ("fork", "vfork"):
        with contextlib.suppress(ValueError, RuntimeError, OSError):  # absent on some architectures
            rules.add_rule(refused, name)
    rules.add_rule(refused, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_THREAD, 0))
    # ENOSYS makes the C library fall back to clone(), where threads are told from processes.
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    rules.add_rule(refused, "socket", seccomp.Arg(0, seccomp.NE, socket.AF_UNIX))
    with tempfile.TemporaryFile() as compiled:
        rules.export_bpf(compiled)
        compiled.seek(0)
        return compiled.read()


def pipe_with(data: bytes) -> int:
    """A pipe's read end holding `data` (the filter is a few hundred bytes: within its buffer)."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, data)
    finally:
        os.close(write_end)
    return read_end


def site_packages() -> list[str]:
    return list(dict.fromkeys(sysconfig.get_path(name) for name in ("purelib", "platlib")))


def _read_only_paths(python: str, extra: tuple[Path, ...]) -> list[str]:
    prefix = os.path.realpath(sys.base_prefix)
    paths = ["/usr", prefix, os.path.dirname(os.path.dirname(python))]
    paths += [os.path.realpath(p) for p in site_packages() if os.path.isdir(p)]
    paths += [os.path.realpath(p) for p in extra]
    return paths


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _outermost(paths: list[str]) -> list[str]:
    """Each folder once, without those inside another (bound with it)."""
    unique = sorted(set(paths), key=len)
    kept: list[str] = []
    for path in unique:
        if not any(_within(path, k) for k in kept):
            kept.append(path)
    return kept
