"""Where trainers run: the `TrainerExecutor` interface the scheduler drives.

One implementation today, `LocalProcessExecutor` (service/jobs/local_executor.py: a child process of
the gateway per job); a cluster executor implements the same interface. An executor starts a
trainer for a spec, hands back a `TrainerRun` whose typed events the scheduler reads until the
trainer exits, and can stop (checkpoint and exit) or kill it. `attach` finds a trainer still running
for a job after a gateway restart; an executor whose trainers die with the gateway finds none, and
the job continues from its latest checkpoint instead.
"""

from __future__ import annotations

import io
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from trainer import storage
from trainer.checkpoints import latest_stored_step
from trainer.events import ErrorEvent, ResultEvent, StoppedEvent, TrainerEvent
from trainer.spec import TrainingSpec

# What a trainer says about how it ended; anything else (or nothing) means it died.
Outcome = ResultEvent | ErrorEvent | StoppedEvent


@dataclass(frozen=True)
class TrainerExit:
    """How a trainer run ended: its exit status (negative: the signal that ended it; None: unknown,
    e.g. its node was lost) and the last outcome event it reported, if any."""

    returncode: int | None
    outcome: Outcome | None

    def describe(self) -> str:
        """ "signal 9" / "status 1" / "an unknown cause", for job events (no paths, no internals)."""
        if self.returncode is None:
            return "an unknown cause"
        if self.returncode < 0:
            try:
                return f"signal {signal.Signals(-self.returncode).value}"
            except ValueError:
                return f"signal {-self.returncode}"
        return f"status {self.returncode}"


class TrainerRun(Protocol):
    job_id: str
    ref: str  # the executor's handle for it (a pid, a Ray submission id), stored in the job row

    def events(self) -> AsyncIterator[TrainerEvent]:
        """The trainer's events as it reports them, until its output ends (it exited or was lost)."""
        ...

    async def wait(self) -> TrainerExit:
        """Once events() is exhausted: how the trainer ended. Anything it left running is ended too."""
        ...

    def stop(self) -> None:
        """Ask the trainer to save a checkpoint and exit (it reports `stopped`)."""
        ...

    def kill(self) -> None:
        """End the trainer now, and whatever it started."""
        ...


class TrainerExecutor(Protocol):
    # Whether trainers use this machine's memory (a child process: admission then waits for free
    # memory and fits "auto" batch sizes to it); on a cluster the scheduler there places them.
    shares_gateway_memory: bool

    def output(self, job_id: str) -> str:
        """Where the job's trainer writes checkpoints, its adapter and metrics: a storage location
        (trainer/storage.py), the spec's output_dir or, in object storage, its `stored.output`."""
        ...

    async def start(self, spec: TrainingSpec) -> TrainerRun:
        """Start a trainer for `spec`; it continues from the latest checkpoint in its output."""
        ...

    async def attach(self, job_id: str, ref: str | None) -> TrainerRun | None:
        """The trainer `ref` (the run's handle stored in the job row) if the executor can still follow
        it (running, or ended with its output kept), after a gateway restart; else None."""
        ...

    def latest_checkpoint_step(self, job_id: str) -> int | None:
        """The step of the checkpoint a new trainer for the job would continue from, or None."""
        ...


class JobFolders:
    """Where trainers find their jobs: `{jobs}/{job_id}/spec.json` and `{jobs}/{job_id}/output/`
    (checkpoints, adapter, metrics), under the storage root: the data folder, or object storage
    (`OPENTUNE_STORAGE_URL`), which is what lets a trainer run on any machine."""

    def __init__(self, jobs: str) -> None:
        self.jobs = jobs

    def output(self, job_id: str) -> str:
        return storage.join(self.jobs, job_id, "output")

    def write_spec(self, spec: TrainingSpec) -> str:
        location = storage.join(self.jobs, spec.job_id, "spec.json")
        # Private: it may hold a grader token (service/jobs/grader_access.py).
        storage.write_stream(location, io.BytesIO(spec.model_dump_json(indent=2).encode()), private=True)
        return location

    def latest_checkpoint_step(self, job_id: str) -> int | None:
        return latest_stored_step(storage.join(self.output(job_id), "checkpoints"))
