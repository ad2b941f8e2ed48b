"""The managed engine's API key, for tests that call the engine directly.

The gateway gives its managed vLLM a random key per start (VLLM_API_KEY in the engine's
environment, never logged), so a test reads it where only the same user can: /proc/PID/environ.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse


def engine_api_key(engine_url: str) -> str:
    port = str(urlparse(engine_url).port).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"vllm.entrypoints.openai.api_server" not in cmdline or port not in cmdline:
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for variable in environ:
            if variable.startswith(b"VLLM_API_KEY="):
                return variable.split(b"=", 1)[1].decode()
    raise AssertionError(f"no managed engine with a key on port {port.decode()}")


def engine_headers(engine_url: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {engine_api_key(engine_url)}"}
