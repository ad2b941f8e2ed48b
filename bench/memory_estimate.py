"""The trainer's memory estimate (trainer/memory.py) against measured peaks.

    python -m bench.memory_estimate [--model DIR] [--batch-size 4] [--max-length 512]

Trains one short epoch of long examples with gradient checkpointing on and off, and prints each
run's measured peak (GPU memory allocated on a GPU, process RSS on CPU) beside the estimate the
gateway and trainer plan with: the ratio measured/estimated should stay below 1 (the estimate
errs on the safe side), and the estimate's on/off difference should track the measured one.
Without --model a random-init Llama of a mid size is built offline (hidden 1024, 8 layers,
vocabulary 32000), large enough that activations and logits dominate what the libraries use.
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

from bench.train_throughput import WORDS
from tests.tiny_model import build_tiny_model
from trainer.memory import GIB, ModelShape, training_bytes
from trainer.model import compute_dtype
from trainer.spec import TrainingSpec

MID_SIZE = {
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 8,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "vocab_size": 32000,
}


def long_examples(count: int, words: int) -> list[dict[str, Any]]:
    rng = random.Random(0)
    return [
        {
            "messages": [
                # The long part is the reply, so truncation keeps tokens to train on.
                {"role": "user", "content": " ".join(rng.choice(WORDS) for _ in range(20))},
                {"role": "assistant", "content": " ".join(rng.choice(WORDS) for _ in range(words))},
            ]
        }
        for _ in range(count)
    ]


def measured_peak(
    model_dir: Path, data: Path, work: Path, args: argparse.Namespace, checkpointing: bool
) -> int:
    spec_path = work / f"spec-{checkpointing}.json"
    TrainingSpec(
        job_id="bench",
        base_model=str(model_dir),
        training_file=data,
        output_dir=work / f"out-{checkpointing}",
        n_epochs=1,
        batch_size=args.batch_size,
        learning_rate=2e-4,
        max_seq_length=args.max_length,
        gradient_checkpointing=checkpointing,
        padding_free=not args.padded,
    ).write(spec_path)
    done = subprocess.run(
        [sys.executable, "-m", "trainer", str(spec_path)], capture_output=True, text=True
    )  # an error event, if any, is the last line
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["event"] == "result", result
    return int(result["peak_memory_bytes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: a mid-size random model)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--padded", action="store_true", help="padded batches instead of padding-free ones")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = args.model or build_tiny_model(work / "model", **MID_SIZE)
        shape = ModelShape.read(model_dir)
        assert shape is not None, f"no readable config.json in {model_dir}"
        data = work / "train.jsonl"
        # Examples longer than max_length, so every step holds batch x max_length tokens.
        data.write_text(
            "".join(json.dumps(e) + "\n" for e in long_examples(max(10, 4 * args.batch_size), 2000))
        )
        tokens_per_step = args.batch_size * args.max_length
        for checkpointing in (True, False):
            measured = measured_peak(model_dir, data, work, args, checkpointing)
            estimate = training_bytes(
                shape, tokens_per_step, compute_bytes=compute_dtype().itemsize, checkpointing=checkpointing
            )
            print(
                f"gradient checkpointing {'on ' if checkpointing else 'off'}: "
                f"measured {measured / GIB:5.2f} GiB, "
                f"estimated {estimate / GIB:5.2f} GiB (measured/estimated {measured / estimate:.2f}x)"
            )


if __name__ == "__main__":
    main()
