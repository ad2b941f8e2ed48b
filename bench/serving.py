"""Serving benchmarks on a real server: gateway overhead, LoRA decode cost, adapter loading.

    python -m bench.serving [--requests 48] [--max-tokens 64]

Starts opentune (uvicorn + managed vLLM) on the tiny offline test model, fine-tunes three small
adapters (their checkpoints are adapters too), then measures, side by side in this run:
- relay cost: output tokens/s, request latency and CPU seconds per 1,000 tokens through the gateway
  vs the same vLLM called directly, at concurrency 1 and 16 (target: >= 0.95x tokens/s, <= 10 ms
  added p50), and the same for LiteLLM's proxy on the same engine (bench/litellm_peer.py; installed
  into its own virtual environment on first use; --no-peer skips it);
- LoRA decode: one adapter vs the base model, and 8 distinct adapters mixed vs the base (S2, S3);
- adapter load: vLLM's load_lora_adapter from disk (S4), and the first-token penalty of a request
  for an adapter that is not loaded yet (S5).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from openai import OpenAI

from bench.litellm_peer import installed, litellm_proxy
from tests.e2e.engine_key import engine_api_key
from tests.e2e.jobs import wait_for_job
from tests.e2e.server import Server, running_server
from tests.strict_format import jsonl, training_examples
from tests.tiny_model import build_tiny_model

KEY = "sk-bench"
PROMPT = [{"role": "user", "content": "Write a long story about a train."}]


async def _one(
    http: httpx.AsyncClient, url: str, model: str, max_tokens: int, headers: dict[str, str]
) -> tuple[float, float, int]:
    """(seconds to first token, seconds in all, output tokens) of one streamed request."""
    body = {
        "model": model,
        "messages": PROMPT,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,  # vLLM extension: every request decodes exactly max_tokens
    }
    started = time.perf_counter()
    first = None
    tokens = 0
    async with http.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: ") and first is None and '"content"' in line:
                first = time.perf_counter() - started
            if '"usage":{' in line.replace(" ", "") and '"completion_tokens"' in line:
                tokens = int(line.split('"completion_tokens":')[1].split(",")[0].split("}")[0])
    return first or 0.0, time.perf_counter() - started, tokens


async def load(
    url: str, models: list[str], requests: int, concurrency: int, max_tokens: int, key: str = ""
) -> dict[str, float]:
    """Output tokens/s and latency percentiles for `requests` streamed requests, `concurrency` at a time."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=300) as http:

        async def bounded(i: int) -> tuple[float, float, int]:
            async with limit:
                return await _one(http, url, models[i % len(models)], max_tokens, headers)

        started = time.perf_counter()
        results = await asyncio.gather(*(bounded(i) for i in range(requests)))
        elapsed = time.perf_counter() - started
    latencies = sorted(r[1] for r in results)
    return {
        "tokens": sum(r[2] for r in results),
        "tokens_per_s": sum(r[2] for r in results) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "ttft_p50_ms": 1000 * statistics.median(r[0] for r in results),
    }


def adapters(client: OpenAI, jobs: int) -> list[str]:
    """Fine-tuned models and their checkpoints: 4 adapters per small job."""
    file = client.files.create(
        file=("t.jsonl", io.BytesIO(jsonl(training_examples(10)))), purpose="fine-tune"
    )
    names: list[str] = []
    for _ in range(jobs):
        job = client.fine_tuning.jobs.create(
            model="tiny", training_file=file.id, hyperparameters={"n_epochs": 3, "batch_size": 5}
        )
        done = wait_for_job(client, job.id)
        names.append(done.fine_tuned_model or "")
        names += [c.fine_tuned_model_checkpoint for c in client.fine_tuning.jobs.checkpoints.list(job.id)]
    return names


@dataclass
class Relay:
    """A way to the engine: `url`, its key, and the process whose CPU time is its cost (with its
    children for LiteLLM's workers; not for opentune, whose children are the engine)."""

    name: str
    url: str
    key: str
    process: psutil.Process
    with_children: bool = False
    ratios: list[float] = field(default_factory=list)
    p50s: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    tokens: float = 0.0

    def cpu_time(self) -> float:
        processes = [self.process] + (self.process.children(recursive=True) if self.with_children else [])
        return sum(sum(p.cpu_times()[:2]) for p in processes)

    def measure(self, direct: dict[str, float], requests: int, concurrency: int, max_tokens: int) -> None:
        before = self.cpu_time()
        result = asyncio.run(load(self.url, ["tiny"], requests, concurrency, max_tokens, self.key))
        self.cpu_s += self.cpu_time() - before
        self.tokens += result["tokens"]
        self.ratios.append(result["tokens_per_s"] / direct["tokens_per_s"])
        self.p50s.append(result["p50_ms"] - direct["p50_ms"])
        self.p99s.append(result["p99_ms"] - direct["p99_ms"])

    def report(self) -> str:
        return (
            f"{self.name} {statistics.median(self.ratios):.3f}x tok/s "
            f"(pairs {min(self.ratios):.2f}-{max(self.ratios):.2f}x), added latency "
            f"p50 {statistics.median(self.p50s):+.1f} ms, p99 {statistics.median(self.p99s):+.1f} ms, "
            f"CPU {1000 * self.cpu_s / self.tokens:.3f} s per 1,000 tokens"
        )


def relay_cost(server: Server, requests: int, max_tokens: int, peer: bool, rounds: int = 5) -> None:
    """opentune (and LiteLLM's proxy, `peer`) vs the same vLLM called directly, in `rounds`
    back-to-back runs; each figure is the median over the rounds (this machine's speed drifts by 2x
    between minutes, so a best-of or a mean compares different machines). Also each relay's CPU
    seconds per 1,000 relayed tokens: on a shared CPU, what the relay takes from the engine, and
    far steadier than tok/s."""
    engine_key = engine_api_key(server.engine_url)
    with contextlib.ExitStack() as stack:
        relays = [Relay("opentune", server.url, KEY, psutil.Process(server.process.pid))]
        if peer:
            _, version = installed()
            proxy = stack.enter_context(litellm_proxy(server.engine_url, engine_key, "tiny", KEY))
            litellm = psutil.Process(proxy.process.pid)
            relays.append(Relay(f"LiteLLM {version}", proxy.url, KEY, litellm, with_children=True))
        for relay in relays:  # warm-up
            asyncio.run(load(relay.url, ["tiny"], 16, 16, max_tokens, relay.key))
        print(f"relay cost (base model, streamed, ignore_eos; vs direct, median of {rounds} rounds):")
        for concurrency in (1, 16):
            measured = [dataclasses.replace(r, ratios=[], p50s=[], p99s=[]) for r in relays]
            for _ in range(rounds):
                direct = asyncio.run(
                    load(server.engine_url, ["tiny"], requests, concurrency, max_tokens, engine_key)
                )
                for relay in measured:
                    relay.measure(direct, requests, concurrency, max_tokens)
            for relay in measured:
                print(f"  concurrency {concurrency:2d}: {relay.report()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--only-relay", action="store_true", help="only the gateway-vs-direct part")
    parser.add_argument("--no-peer", action="store_true", help="without LiteLLM's proxy")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "model")
        data = Path(tmp) / "data"
        data.mkdir()
        overrides = {
            "OPENTUNE_ENGINE_MAX_LORAS": "8",
            "OPENTUNE_ENGINE_MAX_ADAPTERS": "16",
            "OPENTUNE_CHAT_MAX_CONCURRENT_PER_ORG": "64",  # the tests' own cap is 9
        }
        with running_server(model, "tiny", data, KEY, env_overrides=overrides) as server:
            client = OpenAI(base_url=f"{server.url}/v1", api_key=KEY)
            names = [] if args.only_relay else adapters(client, 3)
            run = asyncio.run
            engine_key = engine_api_key(server.engine_url)  # the managed engine's own key

            relay_cost(server, args.requests, args.max_tokens, peer=not args.no_peer)
            if args.only_relay:
                return
            base = run(load(server.url, ["tiny"], args.requests, 1, args.max_tokens, KEY))
            one = run(load(server.url, [names[0]], args.requests, 1, args.max_tokens, KEY))
            ratio = one["tokens_per_s"] / base["tokens_per_s"]
            print(f"LoRA vs base, concurrency 1: {ratio:.2f}x (target S2 >= 0.85x)")
            base16 = run(load(server.url, ["tiny"], args.requests, 16, args.max_tokens, KEY))
            mixed = run(load(server.url, names[:8], args.requests, 16, args.max_tokens, KEY))
            ratio = mixed["tokens_per_s"] / base16["tokens_per_s"]
            print(f"8 adapters mixed vs base, concurrency 16: {ratio:.2f}x (target S3 >= 0.75x)")

            path = str(next((data / "jobs").glob("*/output/adapter")))
            loads = []
            for i in range(5):
                started = time.perf_counter()
                engine = server.engine_url
                body = {"lora_name": f"bench-{i}", "lora_path": path}
                auth = {"Authorization": f"Bearer {engine_key}"}
                httpx.post(
                    f"{engine}/v1/load_lora_adapter", json=body, headers=auth, timeout=60
                ).raise_for_status()
                loads.append(1000 * (time.perf_counter() - started))
                unload = {"lora_name": f"bench-{i}"}
                httpx.post(f"{engine}/v1/unload_lora_adapter", json=unload, headers=auth, timeout=60)
            print(f"adapter load from disk: p50 {statistics.median(loads):.1f} ms (target S4 <= 500 ms)")
            cold_model = names[-1]  # a checkpoint of the last job: never requested, so not loaded yet
            cold = run(load(server.url, [cold_model], 1, 1, 4, KEY))["ttft_p50_ms"]
            warm = run(load(server.url, [cold_model], 5, 1, 4, KEY))["ttft_p50_ms"]
            print(
                f"cold-adapter first-token penalty: {cold - warm:+.1f} ms over {warm:.1f} ms "
                "(target S5 <= 300 ms)"
            )


if __name__ == "__main__":
    main()
