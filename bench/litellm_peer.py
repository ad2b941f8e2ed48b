"""LiteLLM's proxy, the gateway many teams put in front of vLLM, on the same engine as opentune, so
that bench/serving.py shows the peer's relay cost in the same run.

It is installed on first use into its own virtual environment (bench/.litellm-venv, git-ignored):
the project does not depend on it. Its version is printed with the results.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.e2e.server import free_port

VENV = Path(__file__).parent / ".litellm-venv"
PACKAGE = "litellm[proxy]"


def installed() -> tuple[Path, str]:
    """The `litellm` command and its version, installing it first if needed."""
    command = VENV / "bin" / "litellm"
    if not command.exists():
        print(f"installing {PACKAGE} into {VENV} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", PACKAGE]
        subprocess.run(pip, check=True)
    python = str(VENV / "bin" / "python")
    version = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return command, version


@dataclass
class Peer:
    url: str
    process: subprocess.Popen[bytes]


@contextmanager
def litellm_proxy(engine_url: str, engine_key: str, model: str, key: str) -> Iterator[Peer]:
    """LiteLLM's proxy serving `model` from the vLLM at `engine_url`, its master key `key`."""
    command, _ = installed()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(
            "model_list:\n"
            f"  - model_name: {model}\n"
            "    litellm_params:\n"
            f"      model: openai/{model}\n"
            f"      api_base: {engine_url}/v1\n"
            f"      api_key: {engine_key}\n"
            "general_settings:\n"
            f"  master_key: {key}\n"
            "litellm_settings:\n"
            "  drop_params: false\n"
        )
        log = (Path(tmp) / "litellm.log").open("wb")
        process = subprocess.Popen(
            [str(command), "--config", str(config), "--port", str(port), "--num_workers", "1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={"PATH": f"{VENV / 'bin'}:/usr/bin:/bin", "LITELLM_LOG": "ERROR", "HOME": tmp},
        )
        peer = Peer(f"http://127.0.0.1:{port}", process)
        try:
            deadline = time.monotonic() + 180
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"litellm exited: {(Path(tmp) / 'litellm.log').read_text()[-2000:]}")
                try:
                    if httpx.get(f"{peer.url}/health/liveliness", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("litellm did not start within 180 s")
                time.sleep(1)
            yield peer
        finally:
            process.terminate()
            process.wait(timeout=30)
