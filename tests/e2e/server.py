"""Starting a real opentune server (uvicorn + managed vLLM on CPU) as a subprocess, for tests and bench."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.e2e.engine_key import engine_api_key


class ServerStartError(Exception):
    pass


@dataclass
class Server:
    url: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    startup_s: float

    @property
    def engine_url(self) -> str:
        """The managed engine's own address (tests inspect it directly)."""
        found = re.findall(r"Engine ready at (http://\S+)", self.log_path.read_text())
        return found[-1]

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(
    model_dir: Path,
    served_name: str,
    data_dir: Path,
    api_key: str,
    timeout_s: float = 600,
    extra_args: Sequence[str] = (),
    env_overrides: dict[str, str] | None = None,
    log_name: str = "server.log",
    port: int | None = None,
    launcher: Sequence[str] = (sys.executable, "-m", "service"),
    cwd: Path | None = None,
) -> Iterator[Server]:
    """A server on a free port, ready (its engine answers) when this yields; stopped afterwards.
    Several servers may share a data folder (cluster tests), each with its own `log_name`.
    `launcher` and `cwd`: how to start it (bench/baseline_gateway.py starts an older version)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / log_name
    port = port or free_port()
    env = {
        **os.environ,
        "OPENTUNE_API_KEY": api_key,
        # Trainers of jobs with a W&B integration log to a local run folder (no network here).
        "WANDB_MODE": "offline",
        "OPENTUNE_ENGINE_MAX_MODEL_LEN": "8192",
        "OPENTUNE_ENGINE_CPU_KVCACHE_GIB": "1",
        # A small adapter cap, so that tests exercise least-recently-used eviction.
        "OPENTUNE_ENGINE_MAX_LORAS": "2",
        "OPENTUNE_ENGINE_MAX_ADAPTERS": "3",
        # Per-organization limits small enough for tests/e2e/test_quotas.py to reach, loose enough
        # for the rest of the suite (test_fuzz uploads ~250 files and creates many jobs; test_adapters
        # sends 8 chat requests at once).
        "OPENTUNE_MAX_FILES_PER_ORG": "400",
        "OPENTUNE_MAX_STORED_BYTES_PER_ORG": str(64 * 1024 * 1024),
        "OPENTUNE_MAX_ACTIVE_JOBS_PER_ORG": "200",
        "OPENTUNE_MAX_TRAINED_TOKENS_PER_JOB": "100000000",
        "OPENTUNE_CHAT_MAX_CONCURRENT_PER_ORG": "9",
        # Webhook receivers in tests listen on localhost over http; a failed delivery is retried
        # after 1 s (then 4 s, 16 s, ...) rather than 5 s.
        "OPENTUNE_WEBHOOKS_ALLOW_HTTP": "true",
        "OPENTUNE_WEBHOOKS_FIRST_RETRY_S": "1",
        "PYTHONUNBUFFERED": "1",
        **(env_overrides or {}),
    }
    command = [*launcher, "serve", "--model", str(model_dir)]
    command += ["--served-model-name", served_name, "--port", str(port), "--data-dir", str(data_dir)]
    command += list(extra_args)
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    server = Server(f"http://127.0.0.1:{port}", data_dir, log_path, process, 0.0)
    try:
        while True:
            if process.poll() is not None:
                raise ServerStartError(f"server exited with {process.returncode}:\n{server.log_tail()}")
            if time.monotonic() - started > timeout_s:
                raise ServerStartError(f"server not ready after {timeout_s} s:\n{server.log_tail()}")
            try:
                if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        server.startup_s = time.monotonic() - started
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def gateway_pair(
    model_dir: Path, served_name: str, api_key: str, engine: Server, root: Path, env: dict[str, str]
) -> Iterator[tuple[Server, Server]]:
    """Two gateways using `engine`'s vLLM by URL, each with its own data folder under `root`, sharing
    whatever `env` names (a database, storage, an executor): cluster tests."""
    env = {**env, "OPENTUNE_ENGINE_API_KEY": engine_api_key(engine.engine_url)}
    args = ["--engine-url", engine.engine_url]
    with (
        running_server(model_dir, served_name, root / "a", api_key, extra_args=args, env_overrides=env) as a,
        running_server(model_dir, served_name, root / "b", api_key, extra_args=args, env_overrides=env) as b,
    ):
        yield a, b
