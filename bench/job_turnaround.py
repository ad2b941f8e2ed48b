"""Job turnaround on a real server: start-up, training wall time, and `succeeded` -> first token.

    python -m bench.job_turnaround [--examples 60] [--epochs 3] [--repeats 3]

Starts opentune (uvicorn + managed vLLM) on the tiny offline test model, fine-tunes it through the
openai SDK, and times what a client sees. The baseline, measured in the same run, is the base
model's time to first streamed token: the ratio shows what a fresh adapter adds on top of that.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

from openai import OpenAI

from tests.e2e.server import running_server
from tests.strict_format import jsonl, training_examples
from tests.tiny_model import build_tiny_model

API_KEY = "sk-bench"


def first_token_at(client: OpenAI, model: str) -> float:
    """Send a streamed chat request; the monotonic time its first content token arrived."""
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Classify: the order arrived."}],
        stream=True,
        max_tokens=8,
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrived = time.monotonic()
            stream.close()
            return arrived
    raise RuntimeError("no token streamed")


def run_job(client: OpenAI, file_id: str, epochs: int) -> dict[str, float]:
    created = time.monotonic()
    job = client.fine_tuning.jobs.create(
        model="tiny",
        training_file=file_id,
        hyperparameters={"n_epochs": epochs, "batch_size": 1, "learning_rate_multiplier": 15},
    )
    running_at = None
    while True:
        job = client.fine_tuning.jobs.retrieve(job.id)
        now = time.monotonic()
        if job.status == "running" and running_at is None:
            running_at = now
        if job.status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.05)
    assert job.status == "succeeded" and job.fine_tuned_model, job.error
    succeeded_at = time.monotonic()
    return {
        "create_to_succeeded_s": succeeded_at - created,
        "running_s": succeeded_at - (running_at or created),
        "succeeded_to_first_token_s": first_token_at(client, job.fine_tuned_model) - succeeded_at,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "model")
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        with running_server(model, "tiny", data_dir, API_KEY) as server:
            print(f"server start-up (engine ready): {server.startup_s:.1f} s")
            client = OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY)
            data = jsonl(training_examples(args.examples))
            file_id = client.files.create(file=("train.jsonl", io.BytesIO(data)), purpose="fine-tune").id
            ttfts = []
            for _ in range(5):
                sent = time.monotonic()
                ttfts.append(first_token_at(client, "tiny") - sent)
            base_ttft = statistics.median(ttfts)
            runs = [run_job(client, file_id, args.epochs) for _ in range(args.repeats)]
    steps = args.examples * args.epochs
    for key in ("create_to_succeeded_s", "running_s", "succeeded_to_first_token_s"):
        values = [r[key] for r in runs]
        listed = ", ".join(f"{v:.2f}" for v in values)
        print(f"{key}: median {statistics.median(values):.2f} s  (runs: {listed})")
    to_token = statistics.median(r["succeeded_to_first_token_s"] for r in runs)
    print(f"training: {steps} steps, {steps / statistics.median(r['running_s'] for r in runs):.1f} steps/s")
    print(f"base model time to first token (baseline): {base_ttft * 1000:.0f} ms")
    print(f"succeeded -> first token of the new model / base TTFT: {to_token / base_ttft:.2f}x")


if __name__ == "__main__":
    main()
