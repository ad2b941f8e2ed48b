"""Reinforcement fine-tuning's reward curve and wall time: the calibrated job of tests/rft_job.py.

    python -m bench.rft_reward [--seeds 1 2 3] [--epochs 3] [--learning-rate 0.02] [--temperature 0.5]

Runs the real trainer (`python -m trainer`, GRPO with a sandboxed python grader) on the tiny
random-init model once per seed and prints each run's per-step mean training reward, the mean of
its first and last 5 steps, the validation rewards, and the job's wall time (process start to exit:
imports, model load, training, evaluations, checkpoints, the adapter check).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from tests.rft_job import first_and_last, run_trainer, train_rewards, write_job
from tests.tiny_model import build_tiny_model
from trainer.spec import ReinforcementSettings, TrainingSpec


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--generations", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-rft-") as scratch:
        model = build_tiny_model(Path(scratch) / "tiny")
        for seed in args.seeds:
            spec_path = write_job(model, Path(scratch) / f"seed-{seed}", seed=seed)
            spec = TrainingSpec.read(str(spec_path))
            assert spec.reinforcement is not None
            settings = spec.reinforcement.model_dump()
            if args.temperature is not None:
                settings["temperature"] = args.temperature
            if args.generations is not None:
                settings["num_generations"] = args.generations
            spec.reinforcement = ReinforcementSettings(**settings)
            spec.n_epochs = args.epochs or spec.n_epochs
            spec.learning_rate = args.learning_rate or spec.learning_rate
            spec.write(spec_path)
            status, events, wall_s, stderr = run_trainer(spec_path, timeout=3600)
            if status != 0:
                print(f"seed {seed}: the trainer failed ({status}):\n{stderr}")
                continue
            rewards = train_rewards(events)
            first, last = first_and_last(rewards)
            valid = [
                (e["step"], round(e["valid_reward_mean"], 3))
                for e in events
                if e["event"] == "metrics" and e["valid_reward_mean"] is not None
            ]
            summary = {
                "seed": seed,
                "steps": len(rewards),
                "first5": round(first, 3),
                "last5": round(last, 3),
                "margin": round(last - first, 3),
                "wall_s": round(wall_s, 1),
                "valid": valid,
                "curve": [round(r, 3) for r in rewards],
                "temperature": spec.reinforcement.temperature,
                "learning_rate": spec.learning_rate,
                "epochs": spec.n_epochs,
            }
            print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
