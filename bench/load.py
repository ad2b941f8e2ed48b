"""Load generation against an OpenAI-compatible server, for the serving benchmarks: streamed chat
requests, so many at a time, with output tokens/s and latency percentiles.

The client is aiohttp (C parser): on a 2-core machine the load generator shares the CPU with the
engine and the relay it measures, and httpx's pure-Python stream reading took about twice its CPU."""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp

KEY = "sk-bench"
PROMPT = [{"role": "user", "content": "Write a long story about a train."}]


async def _one(
    http: aiohttp.ClientSession, url: str, model: str, max_tokens: int, headers: dict[str, str]
) -> tuple[float, float, int]:
    """(seconds to first token, seconds in all, output tokens) of one streamed request; -1 tokens:
    the server refused it."""
    body = {
        "model": model,
        "messages": PROMPT,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,  # vLLM extension: every request decodes exactly max_tokens
    }
    started = time.perf_counter()
    try:
        return await _stream(http, url, body, headers, started)
    except (aiohttp.ClientError, OSError, TimeoutError):  # the relay dropped it: an error for `load`
        return 0.0, time.perf_counter() - started, -1


async def _stream(
    http: aiohttp.ClientSession, url: str, body: dict[str, object], headers: dict[str, str], started: float
) -> tuple[float, float, int]:
    first = None
    tokens = 0
    async with http.post(f"{url}/v1/chat/completions", json=body, headers=headers) as response:
        if response.status != 200:  # counted as an error by `load`
            return 0.0, time.perf_counter() - started, -1
        async for raw in response.content:  # line by line
            line = raw.decode()
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
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as http:

        async def bounded(i: int) -> tuple[float, float, int]:
            async with limit:
                return await _one(http, url, models[i % len(models)], max_tokens, headers)

        started = time.perf_counter()
        results = await asyncio.gather(*(bounded(i) for i in range(requests)))
        elapsed = time.perf_counter() - started
    errors = sum(1 for r in results if r[2] < 0)
    results = [r for r in results if r[2] >= 0] or [(0.0, elapsed, 0)]
    latencies = sorted(r[1] for r in results)
    return {
        "errors": errors,
        "tokens": sum(r[2] for r in results),
        "tokens_per_s": sum(r[2] for r in results) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "ttft_p50_ms": 1000 * statistics.median(r[0] for r in results),
    }
