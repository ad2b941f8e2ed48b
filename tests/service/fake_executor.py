"""A `TrainerExecutor` (service/jobs/executor.py) whose trainers the test drives by hand: it says
which events a run reports and how it ends. Stop and kill behave as a real trainer's do: a stop
request ends the run with `stopped` (at the step set in `checkpoint_steps`), a kill with signal 9."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from service.jobs.executor import Outcome, TrainerExit
from trainer.events import ErrorEvent, ResultEvent, StoppedEvent, TrainerEvent
from trainer.spec import TrainingSpec


class FakeRun:
    def __init__(self, job_id: str, spec: TrainingSpec | None, executor: FakeExecutor) -> None:
        self.job_id = job_id
        self.ref = f"fake-{job_id}-{len(executor.runs)}"
        self.spec = spec
        self.executor = executor
        self.stop_requests = 0
        self.killed = False
        self.returncode: int | None = None
        self._outcome: Outcome | None = None
        self._queue: asyncio.Queue[TrainerEvent | None] = asyncio.Queue()  # None: the trainer exited

    # -- what the test does ------------------------------------------------------------------------

    def report(self, *events: TrainerEvent) -> None:
        for event in events:
            self._queue.put_nowait(event)

    def exit(self, returncode: int | None) -> None:
        if self.returncode is None:
            self.returncode = returncode
            self._queue.put_nowait(None)

    # -- the TrainerRun contract -------------------------------------------------------------------

    async def events(self) -> AsyncIterator[TrainerEvent]:
        while (event := await self._queue.get()) is not None:
            if isinstance(event, ResultEvent | ErrorEvent | StoppedEvent):
                self._outcome = event
            yield event

    async def wait(self) -> TrainerExit:
        return TrainerExit(self.returncode, self._outcome)

    def stop(self) -> None:
        self.stop_requests += 1
        if self.returncode is None:
            step = self.executor.checkpoint_steps.get(self.job_id, 0)
            self.report(StoppedEvent(step=step, checkpoint=f"checkpoint-{step}" if step else None))
            self.exit(0)

    def kill(self) -> None:
        if self.returncode is None:
            self.killed = True
            self.exit(-9)


class FakeExecutor:
    shares_gateway_memory = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs: list[FakeRun] = []
        self.checkpoint_steps: dict[str, int] = {}  # job id -> step a new trainer would resume from
        self.attachable: dict[str, FakeRun] = {}  # trainers "still running" after a gateway restart

    def output(self, job_id: str) -> str:
        return str(self.root / job_id / "output")

    async def start(self, spec: TrainingSpec) -> FakeRun:
        run = FakeRun(spec.job_id, spec, self)
        self.runs.append(run)
        return run

    async def attach(self, job_id: str, ref: str | None) -> FakeRun | None:
        return self.attachable.pop(job_id, None)

    def latest_checkpoint_step(self, job_id: str) -> int | None:
        return self.checkpoint_steps.get(job_id)

    def runs_of(self, job_id: str) -> list[FakeRun]:
        return [run for run in self.runs if run.job_id == job_id]
