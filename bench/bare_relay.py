"""The floor for the relay benchmark: the least a Python gateway can do, measured beside opentune.

A bare ASGI app under the same uvicorn (uvloop, httptools) that forwards a chat request to the
engine with aiohttp and streams the answer back, chunk by chunk: no routing, no authentication,
no limits, no metrics, no disconnect handling. Whatever it costs against calling the engine directly
is the price of one more process and one more hop on this machine; what opentune costs beyond it
is its own stack's (bench/relay_cost.py prints both).

    ENGINE=http://... ENGINE_KEY=... python -m uvicorn bench.bare_relay:app --port N
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import httpx
from starlette.types import Receive, Scope, Send

from tests.e2e.server import free_port

_session: aiohttp.ClientSession | None = None


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    global _session
    if scope["type"] != "http":
        return
    if scope["method"] == "GET":  # bare_relay() asks whether it is up
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if _session is None:
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=2.0))
    headers = {"content-type": "application/json", "authorization": f"Bearer {os.environ['ENGINE_KEY']}"}
    async with _session.post(os.environ["ENGINE"] + scope["path"], data=body, headers=headers) as answer:
        content_type = answer.headers.get("content-type", "application/json").encode()
        start = {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [(b"content-type", content_type)],
        }
        await send(start)
        async for chunk in answer.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


@dataclass
class BareRelay:
    url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def bare_relay(engine_url: str, engine_key: str) -> Iterator[BareRelay]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.bare_relay:app", "--port", str(port)]
    command += ["--log-level", "warning"]
    env = {**os.environ, "ENGINE": engine_url, "ENGINE_KEY": engine_key}
    process = subprocess.Popen(command, env=env)
    relay = BareRelay(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 60
        while not _answers(relay.url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the bare relay did not start")
            time.sleep(0.5)
        yield relay
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
