"""Adapter-affinity routing vs round-robin on two engine replicas, in one run.

    python -m bench.replicas [--requests 240] [--concurrency 8] [--max-tokens 16]

Starts opentune with two managed vLLM replicas of the tiny offline test model (each a process with
its own CPU cores, service/engine/process.py's DeviceShare), fine-tunes two small jobs whose final
models and checkpoints make 8 adapters, then sends the same Zipf-distributed stream of requests
(a few adapters get most of the traffic, as in a real tenant mix) once per routing policy, the
server started again in between on the same data. Each replica holds at most 3 adapters (fewer
than the 8, so both policies load some adapters again), so which replica a request goes to decides
how often vLLM loads an adapter. Reported per policy:
adapter loads (the gateway's own "Loaded adapter" log lines: one per vLLM load_lora_adapter),
output tokens/s and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import tempfile
from pathlib import Path

from openai import OpenAI

from bench.load import KEY, load
from tests.e2e.jobs import wait_for_job
from tests.e2e.server import running_server
from tests.strict_format import jsonl, training_examples
from tests.tiny_model import build_tiny_model

ADAPTERS_PER_REPLICA = 3


def train_adapters(client: OpenAI) -> list[str]:
    """8 adapters: two jobs' final models and their three checkpoints each."""
    file = client.files.create(
        file=("t.jsonl", io.BytesIO(jsonl(training_examples(10)))), purpose="fine-tune"
    )
    names: list[str] = []
    for _ in range(2):
        job = client.fine_tuning.jobs.create(
            model="tiny", training_file=file.id, hyperparameters={"n_epochs": 3, "batch_size": 5}
        )
        names.append(wait_for_job(client, job.id).fine_tuned_model or "")
        names += [c.fine_tuned_model_checkpoint for c in client.fine_tuning.jobs.checkpoints.list(job.id)]
    return names[:8]


def zipf_sequence(names: list[str], requests: int, exponent: float = 1.1, seed: int = 7) -> list[str]:
    weights = [1 / (rank + 1) ** exponent for rank in range(len(names))]
    return random.Random(seed).choices(names, weights=weights, k=requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "model")
        data = Path(tmp) / "data"
        env = {
            "OPENTUNE_ENGINE_MAX_LORAS": str(ADAPTERS_PER_REPLICA),
            "OPENTUNE_ENGINE_MAX_ADAPTERS": str(ADAPTERS_PER_REPLICA),
            "OPENTUNE_CHAT_MAX_CONCURRENT_PER_ORG": "64",
        }
        names: list[str] = []
        results = {}
        for policy in ("affinity", "round_robin"):
            overrides = env | {"OPENTUNE_ENGINE_ROUTING": policy}
            log = f"server-{policy}.log"
            extra = ["--engine-replicas", "2"]
            with running_server(
                model, "tiny", data, KEY, extra_args=extra, env_overrides=overrides, log_name=log
            ) as server:
                client = OpenAI(base_url=f"{server.url}/v1", api_key=KEY)
                names = names or train_adapters(client)
                sequence = zipf_sequence(names, args.requests)
                loads_before = server.log_path.read_text().count("Loaded adapter")
                measured = asyncio.run(
                    load(server.url, sequence, len(sequence), args.concurrency, args.max_tokens, KEY)
                )
                loads = server.log_path.read_text().count("Loaded adapter") - loads_before
                results[policy] = (loads, measured)
        print(
            f"2 replicas, {len(names)} adapters (at most {ADAPTERS_PER_REPLICA} per replica), "
            f"{args.requests} Zipf(1.1) requests, concurrency {args.concurrency}, "
            f"{args.max_tokens} tokens each:"
        )
        for policy, (loads, measured) in results.items():
            print(
                f"  {policy:11s}: {loads:4d} adapter loads, {measured['tokens_per_s']:6.0f} tok/s, "
                f"p50 {measured['p50_ms']:.0f} ms, p99 {measured['p99_ms']:.0f} ms"
            )
        (affinity_loads, affinity), (rr_loads, rr) = results["affinity"], results["round_robin"]
        print(
            f"  affinity vs round-robin: {affinity_loads / max(rr_loads, 1):.2f}x the loads, "
            f"{affinity['tokens_per_s'] / rr['tokens_per_s']:.2f}x the throughput"
        )


if __name__ == "__main__":
    main()
