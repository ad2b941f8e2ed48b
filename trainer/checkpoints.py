"""The layout of a job's checkpoint folder (no heavy imports: the gateway reads it too)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from trainer import storage

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: Path) -> int:
    match = _CHECKPOINT.match(path.name)
    if not match:
        raise ValueError(f"not a checkpoint folder: {path}")
    return int(match.group(1))


def checkpoint_steps(checkpoints_dir: Path) -> list[int]:
    if not checkpoints_dir.is_dir():
        return []
    return sorted(int(m.group(1)) for p in checkpoints_dir.iterdir() if (m := _CHECKPOINT.match(p.name)))


def latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The highest-step complete checkpoint, if any. transformers writes trainer_state.json last, so
    a checkpoint whose save was cut short (the trainer killed mid-save) has none, or a partial one."""
    for step in reversed(checkpoint_steps(checkpoints_dir)):
        path = checkpoints_dir / f"checkpoint-{step}"
        try:
            json.loads((path / "trainer_state.json").read_bytes())
        except (OSError, ValueError):
            continue
        return path
    return None


def latest_step(checkpoints_dir: Path) -> int | None:
    """The step of the checkpoint a new trainer would continue from, or None."""
    found = latest_checkpoint(checkpoints_dir)
    return checkpoint_step(found) if found else None


def latest_stored_step(checkpoints: str) -> int | None:
    """`latest_step` for a checkpoints folder at a storage location (trainer/storage.py). A stored
    checkpoint is complete once its trainer_state.json is there: it is copied last."""
    if not storage.is_remote(checkpoints):
        return latest_step(Path(checkpoints))
    names = storage.children(checkpoints)
    steps = sorted(int(m.group(1)) for name in names if (m := _CHECKPOINT.match(name)))
    for step in reversed(steps):
        if storage.exists(storage.join(checkpoints, f"checkpoint-{step}", "trainer_state.json")):
            return step
    return None


# What only resuming training reads in a checkpoint folder; serving it as a model needs none of it.
RESUME_STATE_FILES = frozenset({"optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"})
