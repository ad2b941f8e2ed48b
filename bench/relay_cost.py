"""The relay's cost: opentune (and LiteLLM's proxy on the same engine) vs calling vLLM directly,
for bench/serving.py."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.bare_relay import bare_relay
from bench.baseline_gateway import BASELINE_COMMIT, BASELINE_LABEL, available, baseline_gateway
from bench.litellm_peer import installed, litellm_proxy
from bench.load import KEY, load
from tests.e2e.engine_key import engine_api_key
from tests.e2e.server import Server


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
    errors: int = 0  # requests it answered with an error status

    def cpu_time(self) -> float:
        processes = [self.process] + (self.process.children(recursive=True) if self.with_children else [])
        return sum(sum(p.cpu_times()[:2]) for p in processes)

    def run(self, requests: int, concurrency: int, max_tokens: int) -> dict[str, float]:
        before = self.cpu_time()
        result = asyncio.run(load(self.url, ["tiny"], requests, concurrency, max_tokens, self.key))
        self.cpu_s += self.cpu_time() - before
        self.tokens += result["tokens"]
        self.errors += int(result["errors"])
        return result

    def compare(self, result: dict[str, float], direct: dict[str, float]) -> None:
        self.ratios.append(result["tokens_per_s"] / direct["tokens_per_s"])
        self.p50s.append(result["p50_ms"] - direct["p50_ms"])
        self.p99s.append(result["p99_ms"] - direct["p99_ms"])

    def report(self) -> str:
        return (
            f"{self.name} {statistics.median(self.ratios):.3f}x tok/s "
            f"(pairs {min(self.ratios):.2f}-{max(self.ratios):.2f}x), added latency "
            f"p50 {statistics.median(self.p50s):+.1f} ms, p99 {statistics.median(self.p99s):+.1f} ms, "
            f"CPU {1000 * self.cpu_s / self.tokens:.3f} s per 1,000 tokens"
            + (f", {self.errors} requests failed" if self.errors else "")
        )


def relay_cost(
    server: Server,
    requests: int,
    max_tokens: int,
    peer: bool,
    rounds: int = 7,
    baseline_model: Path | None = None,
) -> None:
    """opentune (and LiteLLM's proxy, `peer`; and, given `baseline_model`, the gateway as it was
    before issue 13's relay work, bench/baseline_gateway.py) vs the same vLLM called directly, in
    `rounds` rounds (direct, each relay, direct again); each figure is the median over the rounds
    (this machine's speed drifts between minutes, so a best-of or a mean compares different
    machines). Also each relay's CPU seconds per 1,000 relayed tokens: on a shared CPU, what the
    relay takes from the engine, and far steadier than tok/s."""
    engine_key = engine_api_key(server.engine_url)
    with contextlib.ExitStack() as stack:
        relays = [Relay("opentune", server.url, KEY, psutil.Process(server.process.pid))]
        if baseline_model is not None:
            if available():
                gateway = baseline_gateway(baseline_model, server.engine_url, engine_key, KEY)
                before = stack.enter_context(gateway)
                relays.append(Relay(BASELINE_LABEL, before.url, KEY, psutil.Process(before.process.pid)))
            else:
                print(f"(no baseline: commit {BASELINE_COMMIT} is not in this checkout)")
        floor = stack.enter_context(bare_relay(server.engine_url, engine_key))
        relays.append(
            Relay(
                "bare relay (the floor: bench/bare_relay.py)",
                floor.url,
                "",
                psutil.Process(floor.process.pid),
            )
        )
        if peer:
            _, version = installed()
            proxy = stack.enter_context(litellm_proxy(server.engine_url, engine_key, "tiny", KEY))
            litellm = psutil.Process(proxy.process.pid)
            relays.append(Relay(f"LiteLLM {version}", proxy.url, KEY, litellm, with_children=True))
        # Warm-up: vLLM on CPU prepares its kernels for each new batch shape on first sight, which
        # made the first measured rounds of a run (whichever side met a shape first) swing by 1-2 s.
        for concurrency in (1, 4, 8, 12, 16, 24, 32):
            asyncio.run(load(server.engine_url, ["tiny"], concurrency, concurrency, max_tokens, engine_key))
        for relay in relays:
            asyncio.run(load(relay.url, ["tiny"], 32, 16, max_tokens, relay.key))
        print(f"relay cost (base model, streamed, ignore_eos; vs direct, median of {rounds} rounds):")
        # Concurrency 1 is steady and slow (a request at a time): a third of the requests. At 16,
        # twice as many: every request of a wave starts and ends together, so a round of few waves
        # is at the mercy of its slowest request.
        # Each round: direct, the relays (each in turn first and last), direct again; a relay is
        # compared with the mean of the two direct runs, so the engine's drift within a round
        # (steady, at first order) cancels.
        for concurrency, count in ((1, max(8, requests // 3)), (16, 2 * requests)):
            measured = [dataclasses.replace(r, ratios=[], p50s=[], p99s=[]) for r in relays]

            direct = (server.engine_url, ["tiny"], count, concurrency, max_tokens, engine_key)
            for round_ in range(rounds):
                before = asyncio.run(load(*direct))
                order = measured[round_ % len(measured) :] + measured[: round_ % len(measured)]
                results = [(relay, relay.run(count, concurrency, max_tokens)) for relay in order]
                between = _mean(before, asyncio.run(load(*direct)))
                for relay, result in results:
                    relay.compare(result, between)
            for relay in measured:
                print(f"  concurrency {concurrency:2d} ({count} requests a round): {relay.report()}")
        side_by_side(server.engine_url, engine_key, relays, 2 * requests, max_tokens, rounds)


def _mean(first: dict[str, float], second: dict[str, float]) -> dict[str, float]:
    return {key: (first[key] + second[key]) / 2 for key in ("tokens_per_s", "p50_ms", "p99_ms")}


def side_by_side(
    engine_url: str, engine_key: str, relays: list[Relay], requests: int, max_tokens: int, rounds: int
) -> None:
    """8 streams straight to vLLM and 8 through a relay at the same moment, on the same engine: both
    halves see the same engine speed, so its drift between runs cancels out of the ratio. What
    remains is what the relay adds to each stream; the CPU it takes from the engine slows both
    halves alike and is the CPU figure above."""
    print(f"side by side (8 streams direct + 8 through the relay at once; median of {rounds} rounds):")

    async def both(relay: Relay) -> tuple[dict[str, float], dict[str, float]]:
        direct, relayed = await asyncio.gather(
            load(engine_url, ["tiny"], requests // 2, 8, max_tokens, engine_key),
            load(relay.url, ["tiny"], requests // 2, 8, max_tokens, relay.key),
        )
        return direct, relayed

    for relay in relays:
        ratios, p50s, errors = [], [], 0
        for _ in range(rounds):
            direct, relayed = asyncio.run(both(relay))
            ratios.append(relayed["tokens_per_s"] / direct["tokens_per_s"])
            p50s.append(relayed["p50_ms"] - direct["p50_ms"])
            errors += int(relayed["errors"])
        print(
            f"  {relay.name}: {statistics.median(ratios):.3f}x tok/s per half "
            f"(rounds {min(ratios):.2f}-{max(ratios):.2f}x), added p50 {statistics.median(p50s):+.1f} ms"
            + (f", {errors} requests failed" if errors else "")
        )
