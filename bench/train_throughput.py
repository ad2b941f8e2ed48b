"""Training throughput and peak memory: opentune's trainer against a frozen plain baseline.

    python -m bench.train_throughput [--examples 96] [--batch-size 8] [--epochs 1] [--max-length 512]

Both train QLoRA (NF4, r=16, all linear layers) on the same chat data with the same batch size,
epochs and max length, one after the other in this run; each reports its training time and peak
memory (GPU memory allocated on a GPU, peak process RSS on CPU). The data mixes short and long
examples, as real chat data does. Throughput counts non-padding tokens only. Without a GPU, a tiny
random-init model is used (built offline); on a GPU pass --model with a real-shaped model folder.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from tests.tiny_model import build_tiny_model
from trainer.spec import TrainingSpec

WORDS = [
    "the",
    "order",
    "arrived",
    "late",
    "and",
    "the",
    "box",
    "was",
    "damaged",
    "but",
    "support",
    "replaced",
    "it",
    "quickly",
    "please",
    "extract",
    "the",
    "invoice",
    "number",
    "total",
    "amount",
    "currency",
    "and",
    "due",
    "date",
    "as",
    "json",
    "classify",
    "the",
    "review",
    "as",
    "positive",
]


def chat_data(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Chat examples of very different lengths: most short, some long (a long-tailed mix)."""
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        words = int(rng.paretovariate(1.2) * 12)
        question = " ".join(rng.choice(WORDS) for _ in range(min(words, 300)))
        answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30)))
        examples.append(
            {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
        )
    return examples


def non_padding_tokens(model_dir: Path, examples: list[dict[str, Any]], max_length: int) -> int:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return sum(
        min(max_length, len(tokenizer.apply_chat_template(e["messages"], tokenize=True)["input_ids"]))
        for e in examples
    )


def run_baseline(model_dir: Path, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.baseline_sft", str(model_dir), str(data)]
    command += [str(args.batch_size), str(args.epochs), str(args.max_length)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run_opentune(
    model_dir: Path, data: Path, valid: Path, work: Path, args: argparse.Namespace, options: dict[str, Any]
) -> dict[str, Any]:
    output_dir = work / f"opentune-{random.random()}"
    spec = TrainingSpec(
        job_id="bench",
        base_model=str(model_dir),
        training_file=data,
        # One evaluation, at the last step: the held-out loss says whether a variant trains as well.
        validation_file=valid,
        evaluations_per_job=1,
        output_dir=output_dir,
        n_epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=2e-4,
        max_seq_length=args.max_length,
        **options,
    )
    spec.write(work / "spec.json")
    done = subprocess.run(
        [sys.executable, "-m", "trainer", str(work / "spec.json")], capture_output=True, text=True
    )  # an error event, if any, is the last line
    events = [json.loads(line) for line in done.stdout.strip().splitlines()]
    result = events[-1]
    assert result["event"] == "result", result
    valid_losses = [e["valid_loss"] for e in events if e["event"] == "metrics" and e.get("valid_loss")]
    return {**result, "valid_loss": valid_losses[-1]}


# opentune's trainer as it runs jobs, and with one of its choices turned off.
VARIANTS: dict[str, dict[str, Any]] = {
    "opentune (default)": {},
    "opentune, padded batches": {"padding_free": False},
    "opentune, grad. ckpt on": {"gradient_checkpointing": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: the tiny offline test model)")
    parser.add_argument("--examples", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each trainer; the fastest counts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = args.model or build_tiny_model(work / "model")
        examples = chat_data(args.examples)
        data = work / "train.jsonl"
        data.write_text("".join(json.dumps(e) + "\n" for e in examples))
        valid = work / "valid.jsonl"
        valid.write_text("".join(json.dumps(e) + "\n" for e in chat_data(32, seed=1)))
        tokens = non_padding_tokens(model_dir, examples, args.max_length) * args.epochs
        # Interleaved repeats, best of each: short CPU runs on shared cores are noisy.
        trials: dict[str, list[dict[str, Any]]] = {"baseline (HF+PEFT+TRL)": []} | {v: [] for v in VARIANTS}
        for _ in range(args.repeats):
            trials["baseline (HF+PEFT+TRL)"].append(run_baseline(model_dir, data, args))
            for name, options in VARIANTS.items():
                trials[name].append(run_opentune(model_dir, data, valid, work, args, options))
    best = {name: min(runs, key=lambda r: r["train_runtime_s"]) for name, runs in trials.items()}
    baseline = best["baseline (HF+PEFT+TRL)"]
    for name, measured in best.items():
        rate = tokens / measured["train_runtime_s"]
        peak = measured["peak_memory_bytes"] / 2**30
        speed = baseline["train_runtime_s"] / measured["train_runtime_s"]
        memory = measured["peak_memory_bytes"] / baseline["peak_memory_bytes"]
        loss = f"   held-out loss {measured['valid_loss']:.4f}" if "valid_loss" in measured else ""
        print(
            f"{name:26s} {rate:8.0f} non-pad tokens/s ({speed:.2f}x)   "
            f"peak memory {peak:5.2f} GiB ({memory:.2f}x){loss}"
        )
    packing_gain = (
        best["opentune, padded batches"]["train_runtime_s"] / best["opentune (default)"]["train_runtime_s"]
    )
    print(
        f"padding-free vs padded batches: {packing_gain:.2f}x tokens/s (T5: >= 1.3x, held-out loss within 1%)"
    )
    print("targets: T1 throughput >= 1.5x, T3 peak memory <= 0.6x the baseline (GPU figures)")


if __name__ == "__main__":
    main()
