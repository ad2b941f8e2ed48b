"""Access on the real server: keys are checked before bodies are read, bodies are capped while they
stream, an open server refuses the network, keys are revoked from the CLI, and the engine has its
own key."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import API_KEY, BASE_MODEL, Server
from tests.e2e.engine_key import engine_headers

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)  # measurements: pytest --log-cli-level=INFO

GIB = 1024**3
MIB = 1024**2


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class PeakRss:
    """The highest RSS of a process while the `with` block runs, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.before, self.peak = pid, rss_bytes(pid), 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))

    @property
    def growth(self) -> int:
        return self.peak - self.before


class GiantBody:
    """1 GiB, handed to httpx 1 MiB at a time (so it is sent chunked), counting what was taken."""

    def __init__(self, head: bytes = b"", total: int = GIB) -> None:
        self.head, self.total, self.sent = head, total, 0

    def __iter__(self) -> Iterator[bytes]:
        chunk = b"x" * MIB
        self.sent += len(self.head)
        yield self.head
        while self.sent < self.total:
            self.sent += len(chunk)  # counted when handed over: an upper bound of what was sent
            yield chunk


MULTIPART = {"Content-Type": "multipart/form-data; boundary=B"}
FILE_PART = b'--B\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n' + (
    b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'
)


def test_upload_without_a_key_is_cut_off_before_its_body(server: Server) -> None:
    body = GiantBody(FILE_PART)
    started = time.monotonic()
    with PeakRss(server.process.pid) as rss:
        response = httpx.post(f"{server.url}/v1/files", content=body, headers=MULTIPART, timeout=120)
    elapsed = time.monotonic() - started
    logger.info(
        "401 after the client sent %.1f MiB in %.2f s; gateway RSS %.0f MiB -> peak %.0f MiB",
        body.sent / MIB,
        elapsed,
        rss.before / MIB,
        rss.peak / MIB,
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "missing_api_key"
    assert body.sent < 64 * MIB, "the client was stopped early, not after sending the whole body"
    assert rss.growth < 100 * MIB


def test_bodies_over_the_cap_are_cut_off_while_streaming(server: Server) -> None:
    # A JSON route: capped at OPENTUNE_MAX_REQUEST_BODY_BYTES (16 MiB by default).
    body = GiantBody(b'{"model": "')
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    with PeakRss(server.process.pid) as rss:
        response = httpx.post(f"{server.url}/v1/fine_tuning/jobs", content=body, headers=headers, timeout=120)
    logger.info(
        "413 after the client sent %.1f MiB; gateway RSS growth %.0f MiB", body.sent / MIB, rss.growth / MIB
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "request_too_large"
    assert 16 * MIB < body.sent < 64 * MIB
    assert rss.growth < 100 * MIB

    # An upload declaring more than the upload cap (513 MiB) is refused before any byte is read.
    upload = GiantBody(FILE_PART)
    declared = {**MULTIPART, "Authorization": f"Bearer {API_KEY}", "Content-Length": str(600 * MIB)}
    response = httpx.post(f"{server.url}/v1/files", content=upload, headers=declared, timeout=120)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    assert upload.sent < 64 * MIB


def _without_opentune_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OPENTUNE_")} | {"HF_HUB_OFFLINE": "1"}


def test_open_server_refuses_to_start_on_a_network_address(tmp_path: Path) -> None:
    serve = [sys.executable, "-m", "service", "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]
    serve += ["--model", "no-such-org/no-such-model"]
    refused = subprocess.run(serve, capture_output=True, text=True, timeout=60, env=_without_opentune_env())
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert "0.0.0.0" in line and "--insecure-no-auth" in line and "OPENTUNE_API_KEY" in line

    # With the flag it gets past the check (and stops at the next one: this model cannot load).
    insecure = subprocess.run(
        [*serve, "--insecure-no-auth"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_without_opentune_env(),
    )
    assert insecure.returncode == 2 and "cannot load model" in insecure.stderr
    assert "--insecure-no-auth" not in insecure.stderr


def _keys(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "service", "keys", *args, "--data-dir", str(server.data_dir)]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)


def test_keys_create_list_and_revoke(server: Server) -> None:
    key = _keys(server, "create", "--org", "access-test").stdout.strip()
    client = OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    assert BASE_MODEL in [m.id for m in client.models.list()]

    listing = _keys(server, "list", "--org", "access-test").stdout
    [header, row] = listing.strip().splitlines()
    assert header.split() == ["ID", "ORGANIZATION", "HINT", "CREATED", "REVOKED"]
    key_id, org, hint, _, revoked = row.split()
    assert org == "access-test" and revoked == "-" and key.startswith(hint.removesuffix("..."))
    assert key not in listing and key[12:] not in listing

    client.models.list()  # the server remembers the key as valid from here (KeyRing.CACHE_S)
    _keys(server, "revoke", key_id)
    revoked_at = time.monotonic()
    while True:
        try:
            client.models.list()
        except openai.AuthenticationError:
            break
        assert time.monotonic() - revoked_at < 6.5, "a revoked key must stop working within ~5 s"
        time.sleep(0.2)
    logger.info("revoked key refused after %.1f s", time.monotonic() - revoked_at)
    assert _keys(server, "list", "--org", "access-test").stdout.strip().splitlines()[1].split()[-1] != "-"
    # The server's own key still works.
    assert OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0).models.list()


def test_engine_refuses_callers_without_its_key(server: Server, client: OpenAI) -> None:
    engine = server.engine_url
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": f"Bearer {API_KEY}"}):
        assert httpx.get(f"{engine}/v1/models", headers=headers, timeout=10).status_code == 401
        load = {"lora_name": "stolen", "lora_path": "/tmp"}
        assert httpx.post(f"{engine}/v1/load_lora_adapter", json=load, headers=headers).status_code == 401
    assert httpx.get(f"{engine}/v1/models", headers=engine_headers(engine), timeout=10).status_code == 200
    # vLLM leaves /health open (the gateway's health checks need no key).
    assert httpx.get(f"{engine}/health", timeout=10).status_code == 200
    # The gateway sends the key: chat through it works.
    reply = client.chat.completions.create(
        model=BASE_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert reply.choices
