"""One real opentune server per test session: uvicorn, a vLLM engine on the tiny model, trainers.

Engine start-up costs ~30 s and training ~1 min on CI's 2 cores, so every end-to-end test shares it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

API_KEY = "sk-test-e2e-key"
BASE_MODEL = "tiny"
STARTUP_TIMEOUT_S = 600


@dataclass
class Server:
    url: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("opentune-data")
    log_path = data_dir / "server.log"
    port = _free_port()
    env = {
        **os.environ,
        "OPENTUNE_API_KEY": API_KEY,
        "OPENTUNE_ENGINE_MAX_MODEL_LEN": "1024",
        "OPENTUNE_ENGINE_CPU_KVCACHE_GIB": "1",
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable,
        "-m",
        "service",
        "serve",
        "--model",
        str(tiny_model),
        "--served-model-name",
        BASE_MODEL,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    running = Server(f"http://127.0.0.1:{port}", data_dir, log_path, process)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{running.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready after {STARTUP_TIMEOUT_S} s:\n{running.log_tail()}")
            try:
                if httpx.get(f"{running.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def client(server: Server) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0)
