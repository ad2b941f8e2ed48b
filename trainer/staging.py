"""A trainer whose job's bytes live in object storage (the spec's `stored` section, set by the
gateway in cluster mode): the inputs are copied into a scratch folder before training, and the
output is copied out as it is written, so that a trainer on any node, or a later one after a crash,
continues from the same stored job folder. The training code only ever sees local paths; this
module is the whole difference.

Stored output mirrors the local one: each checkpoint is copied when saved (its trainer_state.json
last, which marks it complete), the checkpoints the trainer pruned are removed, and the adapter and
metrics are copied before the `result` event names them. Events carry stored locations, so the
gateway and engines never see a node's scratch paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from trainer import storage
from trainer.checkpoints import RESUME_STATE_FILES, checkpoint_step, latest_stored_step
from trainer.events import CheckpointEvent, EventWriter, ResultEvent, StoppedEvent, TrainerEvent
from trainer.spec import StoredLocations, TrainingSpec

_COMPLETE_MARK = "trainer_state.json"


def stage(spec: TrainingSpec, scratch: Path) -> TrainingSpec:
    """The spec with its paths under `scratch`, which then holds copies of the inputs and of the
    stored checkpoints (the latest whole, the older ones without their optimizer state)."""
    stored = _stored(spec)
    staged = spec.model_copy(
        update={
            "training_file": scratch / spec.training_file,
            "validation_file": scratch / spec.validation_file if spec.validation_file else None,
            "init_adapter": scratch / spec.init_adapter if spec.init_adapter else None,
            "output_dir": scratch / spec.output_dir,
            "token_cache_dir": None,  # the gateway's cache folder is not on this machine
        }
    )
    storage.fetch(stored.training_file, staged.training_file)
    if stored.validation_file and staged.validation_file:
        storage.fetch(stored.validation_file, staged.validation_file)
    if stored.init_adapter and staged.init_adapter:
        storage.fetch(stored.init_adapter, staged.init_adapter)
    checkpoints = storage.join(stored.output, "checkpoints")
    latest = latest_stored_step(checkpoints)
    if latest is None:
        return staged
    for name in storage.children(checkpoints):
        try:
            step = checkpoint_step(Path(name))
        except ValueError:
            continue
        if step <= latest:  # a later one is incomplete: its copy was cut short
            # The older ones serve as models only: no optimizer state.
            skip = frozenset() if step == latest else RESUME_STATE_FILES
            storage.fetch(storage.join(checkpoints, name), staged.checkpoints_dir / name, skip)
    metrics = storage.join(stored.output, "metrics.csv")
    if storage.exists(metrics):
        storage.fetch(metrics, staged.metrics_csv)
    return staged


def _stored(spec: TrainingSpec) -> StoredLocations:
    if spec.stored is None:
        raise ValueError("the spec has no stored locations")
    return spec.stored


class StoredOutputEvents(EventWriter):
    """Copies the output to storage before each event that names it, and names the stored copy."""

    def __init__(self, stream: TextIO, staged: TrainingSpec) -> None:
        super().__init__(stream)
        self.spec = staged
        self.output = _stored(staged).output
        self.checkpoints = storage.join(self.output, "checkpoints")

    def emit(self, event: TrainerEvent) -> None:
        match event:
            case CheckpointEvent():
                event = event.model_copy(update={"path": self._put_checkpoint(Path(event.path))})
            case ResultEvent():
                adapter = storage.join(self.output, "adapter")
                storage.put(Path(event.adapter_dir), adapter)
                event = event.model_copy(update={"adapter_dir": adapter, "metrics_csv": self._put_metrics()})
            case StoppedEvent() if event.checkpoint:
                # The checkpoint a stop saves was copied with its `checkpoint` event.
                stored = storage.join(self.checkpoints, Path(event.checkpoint).name)
                event = event.model_copy(update={"checkpoint": stored})
        super().emit(event)

    def _put_checkpoint(self, path: Path) -> str:
        """Copy a checkpoint just saved, drop the stored ones the trainer pruned; the copy's location."""
        stored = storage.join(self.checkpoints, path.name)
        storage.put(path, stored, last=_COMPLETE_MARK)
        kept = set(storage.children(str(self.spec.checkpoints_dir)))
        for stale in set(storage.children(self.checkpoints)) - kept:
            storage.remove(storage.join(self.checkpoints, stale))
        self._put_metrics()
        return stored

    def _put_metrics(self) -> str:
        stored = storage.join(self.output, "metrics.csv")
        if self.spec.metrics_csv.exists():
            storage.put(self.spec.metrics_csv, stored)
        return stored
