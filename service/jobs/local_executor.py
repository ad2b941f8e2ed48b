"""Trainers as child processes of the gateway: `python -m trainer SPEC.json`, events on stdout.

Each job has a folder under `{data_dir}/jobs/{job_id}`: spec.json, trainer.log (the trainer's
stderr, for the operator) and output/ (checkpoints, adapter, metrics). Trainers die with the
gateway (service/processes.py), so after a restart there is nothing to attach to: the job continues
from its latest checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from service.jobs.executor import JobFolders, Outcome, TrainerExit
from service.processes import child_process_options, signal_group
from trainer.events import ErrorEvent, ResultEvent, StoppedEvent, TrainerEvent, parse_event
from trainer.spec import TrainingSpec

logger = logging.getLogger(__name__)


class LocalTrainerRun:
    def __init__(self, job_id: str, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self.job_id = job_id
        self.ref = str(process.pid)
        self.process = process
        self.log_path = log_path
        self._outcome: Outcome | None = None

    async def events(self) -> AsyncIterator[TrainerEvent]:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            event = parse_event(line)
            if event is None:
                continue
            if isinstance(event, ResultEvent | ErrorEvent | StoppedEvent):
                self._outcome = event
            yield event

    async def wait(self) -> TrainerExit:
        returncode = await self.process.wait()
        signal_group(self.process, signal.SIGKILL)  # anything it started goes with it
        if self._outcome is None:
            logger.warning("Trainer of %s exited with %s; see %s", self.job_id, returncode, self.log_path)
        return TrainerExit(returncode, self._outcome)

    def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.process.returncode is None:
            signal_group(self.process, signal.SIGKILL)


class LocalProcessExecutor:
    shares_gateway_memory = True

    def __init__(self, jobs: str, logs_dir: Path) -> None:
        """`jobs`: the storage location of job folders (JobFolders); `logs_dir`: the local folder
        where each job's trainer.log is kept (`{logs_dir}/{job_id}/trainer.log`)."""
        self.folders = JobFolders(jobs)
        self.output = self.folders.output
        self.latest_checkpoint_step = self.folders.latest_checkpoint_step
        self.logs_dir = logs_dir

    async def start(self, spec: TrainingSpec) -> LocalTrainerRun:
        spec_location = await asyncio.to_thread(self.folders.write_spec, spec)
        log_path = self.logs_dir / spec.job_id / "trainer.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "trainer",
                spec_location,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                **child_process_options(PYTHONUNBUFFERED="1"),
            )
        return LocalTrainerRun(spec.job_id, process, log_path)

    async def attach(self, job_id: str, ref: str | None) -> LocalTrainerRun | None:
        return None  # a local trainer gets SIGTERM when its gateway dies, and exits after a checkpoint
