"""Serving benchmarks on a real server: gateway overhead, LoRA decode cost, adapter loading.

    python -m bench.serving [--requests 48] [--max-tokens 64]

Starts opentune (uvicorn + managed vLLM) on the tiny offline test model, fine-tunes three small
adapters (their checkpoints are adapters too), then measures, side by side in this run:
- relay cost: output tokens/s, request latency and CPU seconds per 1,000 tokens through the gateway
  vs the same vLLM called directly, at concurrency 1 and 16 (target: >= 0.95x tokens/s, <= 10 ms
  added p50), and the same for LiteLLM's proxy on the same engine (bench/litellm_peer.py; installed
  into its own virtual environment on first use; --no-peer skips it), then both side by side on
  the engine at once, so the engine's drift between runs cancels (bench/relay_cost.py);
- LoRA decode: one adapter vs the base model, and 8 distinct adapters mixed vs the base (S2, S3);
- adapter load: vLLM's load_lora_adapter from disk (S4), and the first-token penalty of a request
  for an adapter that is not loaded yet (S5).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from openai import OpenAI

from bench.load import KEY, load
from bench.relay_cost import relay_cost
from tests.e2e.engine_key import engine_api_key
from tests.e2e.jobs import wait_for_job
from tests.e2e.server import running_server
from tests.strict_format import jsonl, training_examples
from tests.tiny_model import build_tiny_model


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--only-relay", action="store_true", help="only the gateway-vs-direct part")
    parser.add_argument("--no-peer", action="store_true", help="without LiteLLM's proxy")
    parser.add_argument(
        "--no-baseline", action="store_true", help="without the gateway as it was before (2097c1e^)"
    )
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

            baseline = None if args.no_baseline else model
            relay_cost(server, args.requests, args.max_tokens, not args.no_peer, baseline_model=baseline)
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
