"""The job scheduler: validates new jobs, runs queued ones as trainer processes, records the outcome.

One asyncio task in the gateway. It wakes when notified (a job was created) or every poll interval.
Each running job has a watcher task reading the trainer's JSON-line events from its stdout. Files
are validated in child processes (service/jobs/validation.py); the gateway never parses one.

No single job can stop a pass: whatever goes wrong while handling one job fails that job, and the
pass goes on with the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from service.adapters import AdapterLoadError
from service.catalog import ModelCatalog
from service.config import Settings
from service.engine.fleet import EngineFleet
from service.errors import EngineUnavailable, NotFound
from service.files import FileStore
from service.jobs.capacity import BatchSizeLimit, memory_batch_limit, memory_shortfall
from service.jobs.checkpoints import CheckpointStore
from service.jobs.fairness import fair_order
from service.jobs.hyperparameters import (
    DEFAULT_DPO_BETA,
    default_batch_size,
    is_auto,
    resolve_hyperparameters,
)
from service.jobs.naming import base_of, checkpoint_model_name
from service.jobs.states import JobStatus
from service.jobs.store import JobStore
from service.jobs.training_options import TrainingOptions, parse_training_options
from service.jobs.validation import FileValidator
from service.processes import child_process_options, signal_group
from service.store import FileRow, JobRow
from trainer.checkpoints import latest_checkpoint
from trainer.spec import TrainingSpec
from trainer.token_cache import forget_file

logger = logging.getLogger(__name__)

# How long a trainer gets to stop after SIGTERM before it is killed.
STOP_GRACE_S = 30.0
# How often expired files are removed (they are also refused whenever read).
PURGE_EXPIRED_FILES_EVERY_S = 60.0


@dataclass
class TrainerRun:
    job_id: str
    process: asyncio.subprocess.Process
    started_at: float = field(default_factory=time.monotonic)
    outcome: dict[str, Any] | None = None  # the trainer's `result` or `error` event

    def terminate(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)


class JobScheduler:
    def __init__(
        self,
        settings: Settings,
        jobs: JobStore,
        checkpoints: CheckpointStore,
        files: FileStore,
        catalog: ModelCatalog,
        fleet: EngineFleet,
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.checkpoints = checkpoints
        self.files = files
        self.catalog = catalog
        self.fleet = fleet
        self.jobs_dir = settings.data_dir.resolve() / "jobs"
        self._wake = asyncio.Event()
        self._runs: dict[str, TrainerRun] = {}
        self._told_to_wait: set[str] = set()  # queued jobs whose wait for memory was announced
        self._last_start_by_org: dict[str, float] = {}  # when each organization last had a turn
        self._watchers: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self.validator = FileValidator(settings, jobs, files, fleet, on_done=self.notify)
        self._next_purge = 0.0
        files.on_remove.append(self._forget_tokenized_data)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._event_loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._recover)
        self._loop_task = asyncio.create_task(self._loop(), name="job-scheduler")

    async def stop(self) -> None:
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self.validator.stop()
        for run in list(self._runs.values()):
            run.terminate()
        if self._watchers:
            await asyncio.wait(self._watchers, timeout=STOP_GRACE_S)
        for run in list(self._runs.values()):
            signal_group(run.process, signal.SIGKILL)

    # notify() and cancel() are called from request handlers' worker threads: hop onto the loop.

    def notify(self) -> None:
        if self._event_loop is not None:
            self._event_loop.call_soon_threadsafe(self._wake.set)

    def stop_trainer(self, job_id: str) -> None:
        """Ask the job's trainer, if one runs, to checkpoint and exit (SIGTERM); the caller already
        changed the job's state (paused, cancelled)."""
        if self._event_loop is not None:
            self._event_loop.call_soon_threadsafe(self._stop_trainer, job_id)

    def _stop_trainer(self, job_id: str) -> None:
        run = self._runs.get(job_id)
        if run is not None:
            run.terminate()
            asyncio.get_running_loop().call_later(STOP_GRACE_S, self._kill_if_alive, run)

    def _kill_if_alive(self, run: TrainerRun) -> None:
        if run.process.returncode is None:
            signal_group(run.process, signal.SIGKILL)

    def _recover(self) -> None:
        """Jobs left `running` by a previous server process go back to the queue and continue from
        their last checkpoint (their trainer got SIGTERM when the server died, and saved one)."""
        for job_id in self.jobs.ids_in_status(JobStatus.RUNNING):
            checkpoint = latest_checkpoint(self.jobs_dir / job_id / "output" / "checkpoints")
            if self.jobs.transition(job_id, JobStatus.QUEUED, {JobStatus.RUNNING}):
                where = f"from {checkpoint.name}" if checkpoint else "from the start"
                self.jobs.add_event(
                    job_id, f"The server restarted during training; the job continues {where}"
                )

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            await self.run_pass()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.scheduler_poll_s)

    async def run_pass(self) -> None:
        """One pass: start file checks, remove expired files, start queued jobs. Each step is
        isolated, and within a step each job is (see _start_queued, validation.py)."""
        steps = (self._validate_pending, self._purge_expired_files, self._start_queued)
        for step in steps:
            try:
                await step()
            except Exception:
                logger.exception("Scheduler step %s failed", step.__name__)

    async def _validate_pending(self) -> None:
        self.validator.start_pending()

    # -- expired files ---------------------------------------------------------------------------

    async def _purge_expired_files(self) -> None:
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_EXPIRED_FILES_EVERY_S
        removed = await asyncio.to_thread(self.files.purge_expired)
        if removed:
            logger.info("Removed %d expired file(s)", removed)

    def token_cache_dir(self, org_id: str) -> Path:
        """Each organization's own tokenized-data cache: a cache hit must not reveal that another
        organization trained on the same data. Named by a digest: any organization name is safe."""
        name = hashlib.sha256(org_id.encode()).hexdigest()[:24]
        return self.settings.data_dir.resolve() / "cache" / "tokenized" / name

    def _forget_tokenized_data(self, row: FileRow) -> None:
        forget_file(self.token_cache_dir(row.organization_id), row.id)

    def _fail(
        self, job_id: str, code: str, message: str, param: str | None, only_from: set[JobStatus] | None = None
    ) -> None:
        error = {"code": code, "message": message, "param": param}
        if self.jobs.transition(job_id, JobStatus.FAILED, only_from, error=error):
            self.jobs.add_event(job_id, message, level="error")

    # -- queued -> running -----------------------------------------------------------------------

    async def _start_queued(self) -> None:
        # Round-robin across organizations (service/jobs/fairness.py), first in, first out within one.
        queued = self.jobs.waiting_jobs(JobStatus.QUEUED)
        for job_id in fair_order(queued, self.jobs.running_by_org(), self._last_start_by_org):
            if len(self._runs) >= self.settings.max_concurrent_jobs:
                return
            if job_id in self._runs:
                continue  # resumed while its previous trainer is still saving: start once it exits
            try:
                await self._start(job_id)
            except Exception:
                logger.exception("Starting %s failed", job_id)
                if job_id not in self._runs:
                    message = "The server could not start this job."
                    self._fail(job_id, "internal_error", message, None, {JobStatus.QUEUED, JobStatus.RUNNING})

    async def _start(self, job_id: str) -> None:
        job = self.jobs.get(None, job_id)
        if not self._files_still_usable(job):
            return
        init_adapter = self._adapter_to_continue(job)
        if init_adapter is False:
            return
        base_path = self.fleet.get(base_of(job.model_name)).model_path
        shortfall = await asyncio.to_thread(memory_shortfall, base_path, self.settings.trainer_memory_gib)
        if shortfall is not None:
            if job_id not in self._told_to_wait:
                self._told_to_wait.add(job_id)
                self.jobs.add_event(job_id, shortfall, level="warn")
            return
        self._told_to_wait.discard(job_id)
        options = parse_training_options(job.job_metadata, self.settings.engine_max_lora_rank)
        limit = await self._batch_size_limit(job, base_path, options)
        resolved = resolve_hyperparameters(
            job.requested_hyperparameters,
            job.n_training_examples or 0,
            job.method_type,
            batch_size_limit=limit.batch_size if limit else None,
        )
        job_dir = self.jobs_dir / job_id
        # Built before the job turns `running`: a spec that cannot be built fails the job instead
        # of leaving it running with no trainer.
        try:
            spec = TrainingSpec(
                job_id=job_id,
                base_model=str(base_path),
                training_file=self.files.path_of(job.training_file),
                validation_file=self.files.path_of(job.validation_file) if job.validation_file else None,
                output_dir=job_dir / "output",
                n_epochs=resolved.n_epochs,
                batch_size=resolved.batch_size,
                learning_rate=resolved.learning_rate,
                seed=job.seed,
                method=job.method_type,
                beta=resolved.beta or DEFAULT_DPO_BETA,
                init_adapter=init_adapter,
                lora=options.lora,
                token_cache_dir=self.token_cache_dir(job.organization_id),
                max_seq_length=options.max_seq_length,
            )
        except ValidationError as exc:
            reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            message = f"The job's hyperparameters cannot be used for training ({reasons})."
            self._fail(job_id, "invalid_hyperparameters", message, None, {JobStatus.QUEUED})
            return
        if not self.jobs.transition(job_id, JobStatus.RUNNING, hyperparameters=resolved.to_wire()):
            return
        self.jobs.add_event(job_id, "Fine-tuning job started")
        self._last_start_by_org[job.organization_id] = time.monotonic()
        if limit:
            self.jobs.add_event(job_id, limit.reason)
        job_dir.mkdir(parents=True, exist_ok=True)
        await self._spawn(job, spec, job_dir)

    def _files_still_usable(self, job: JobRow) -> bool:
        """Whether the job's files still exist (not deleted, not expired); else the job is failed."""
        for file_id, param in (
            (job.training_file, "training_file"),
            (job.validation_file, "validation_file"),
        ):
            if file_id and not self.files.usable(job.organization_id, file_id):
                message = f"The {param.replace('_', ' ')} {file_id} was deleted or has expired."
                self._fail(job.id, f"invalid_{param}", message, param, {JobStatus.QUEUED})
                return False
        return True

    async def _batch_size_limit(
        self, job: JobRow, base_path: Path, options: TrainingOptions
    ) -> BatchSizeLimit | None:
        """An "auto" batch size lowered to fit the free memory (capacity.py), or None. Uses the
        longest example counted at validation: the training file is not read here."""
        if not is_auto(job.requested_hyperparameters, "batch_size") or job.longest_example_tokens is None:
            return None
        upper = default_batch_size(job.n_training_examples or 0)
        args = (base_path, job.longest_example_tokens, options.lora.r, upper)
        return await asyncio.to_thread(memory_batch_limit, *args)

    def _adapter_to_continue(self, job: JobRow) -> Path | Literal[False] | None:
        """The adapter of the fine-tuned model a job continues from (None for a base model), or
        False when that model is gone (the job is failed)."""
        if job.model in self.catalog.base_names:
            return None
        try:
            served = self.catalog.resolve(job.organization_id, job.model)
        except NotFound:
            served = None
        if served is None or not served.adapter_path or not Path(served.adapter_path).is_dir():
            message = f"The model {job.model} this job continues from no longer exists."
            self._fail(job.id, "model_not_found", message, "model", {JobStatus.QUEUED})
            return False
        return Path(served.adapter_path)

    async def _spawn(self, job: JobRow, spec: TrainingSpec, job_dir: Path) -> None:
        spec_path = job_dir / "spec.json"
        spec.write(spec_path)
        with (job_dir / "trainer.log").open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "trainer",
                str(spec_path),
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                **child_process_options(PYTHONUNBUFFERED="1"),
            )
        run = TrainerRun(job_id=job.id, process=process)
        self._runs[job.id] = run
        watcher = asyncio.create_task(self._watch(job, run, job_dir), name=f"trainer-{job.id}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    # -- running -> succeeded | failed -----------------------------------------------------------

    async def _watch(self, job: JobRow, run: TrainerRun, job_dir: Path) -> None:
        try:
            assert run.process.stdout is not None
            async for raw in run.process.stdout:
                for stale in await asyncio.to_thread(self._on_trainer_line, job, run, raw):
                    await self.fleet.get(base_of(job.model_name)).adapters.unload(stale)
            returncode = await run.process.wait()
            signal_group(run.process, signal.SIGKILL)  # anything it started goes with it
            await self._finish(job, run, returncode, job_dir)
        except Exception:
            logger.exception("Watching the trainer of %s failed", job.id)
            self._fail(
                job.id, "internal_error", "The server lost track of the trainer.", None, {JobStatus.RUNNING}
            )
        finally:
            if self._runs.get(job.id) is run:
                del self._runs[job.id]
            self.notify()

    def _on_trainer_line(self, job: JobRow, run: TrainerRun, raw: bytes) -> list[str]:
        """Record one trainer event; returns names of checkpoint models that no longer exist."""
        try:
            event = json.loads(raw)
        except json.JSONDecodeError:
            logger.debug("Trainer %s printed: %s", run.job_id, raw[:200])
            return []
        kind = event.get("event")
        if kind == "message":
            self.jobs.add_event(run.job_id, str(event.get("message")), level=event.get("level", "info"))
        elif kind == "metrics":
            self._on_metrics(run, event)
        elif kind == "checkpoint":
            return self._on_checkpoint(job, event)
        elif kind in ("result", "error"):
            run.outcome = event
        return []

    def _on_checkpoint(self, job: JobRow, event: dict[str, Any]) -> list[str]:
        step = int(event["step"])
        if event.get("epoch_end"):
            name = checkpoint_model_name(job.model_name, step)
            self.checkpoints.add(
                job.id, job.organization_id, step, name, str(event["path"]), event["metrics"]
            )
            self.jobs.add_event(job.id, f"Checkpoint created at step {step}: {name}")
        return self.checkpoints.prune(job.id, [int(s) for s in event.get("kept_epoch_steps", [])])

    def _on_metrics(self, run: TrainerRun, event: dict[str, Any]) -> None:
        step, total = int(event["step"]), int(event["total_steps"])
        data = {k: v for k, v in event.items() if k != "event" and v is not None}
        message = f"Step {step}/{total}: training loss={float(event['train_loss']):.4f}"
        if "valid_loss" in data:
            message += f", validation loss={float(data['valid_loss']):.4f}"
        self.jobs.add_event(run.job_id, message, type_="metrics", data=data)
        if step > 0:
            elapsed = time.monotonic() - run.started_at
            self.jobs.update_fields(
                run.job_id, estimated_finish=int(time.time() + elapsed / step * max(total - step, 0))
            )

    async def _finish(self, job: JobRow, run: TrainerRun, returncode: int, job_dir: Path) -> None:
        """Apply the trainer's outcome. Only a `running` job is failed by it: a job paused or
        cancelled meanwhile (and perhaps already resumed) keeps the state the user gave it."""
        outcome = run.outcome or {}
        running = {JobStatus.RUNNING}
        if outcome.get("event") == "result" and returncode == 0:
            await self._succeed(job, outcome)
        elif outcome.get("event") == "error":
            self._fail(job.id, str(outcome["code"]), str(outcome["message"]), outcome.get("param"), running)
        else:
            # Stopped on request (the job is paused or cancelled: nothing changes) or crashed. The
            # log's path is for the operator, not in the job's error (no server paths to users).
            logger.warning(
                "Trainer of %s exited with %s; see %s", job.id, returncode, job_dir / "trainer.log"
            )
            message = (
                f"The trainer exited unexpectedly (status {returncode}); the server's logs have details."
            )
            self._fail(job.id, "training_failed", message, None, running)

    async def _succeed(self, job: JobRow, result: dict[str, Any]) -> None:
        name, adapter_dir = job.model_name, str(result["adapter_dir"])
        adapters = self.fleet.get(base_of(name)).adapters
        try:
            # Loaded before the job says `succeeded`, so the model answers as soon as it is listed.
            await adapters.ensure_loaded(name, adapter_dir)
        except AdapterLoadError as exc:
            message = f"The trained adapter could not be served: {exc}"
            self._fail(job.id, "adapter_load_failed", message, None, {JobStatus.RUNNING, JobStatus.PAUSED})
            return
        except EngineUnavailable:
            # The engine is restarting, which says nothing about the adapter: it loads on first use.
            logger.warning("Engine unavailable when %s finished; its adapter will load on demand", job.id)
        results = await asyncio.to_thread(
            self.files.create_from_path,
            job.organization_id,
            Path(str(result["metrics_csv"])),
            "step_metrics.csv",
            "fine-tune-results",
        )
        if self.jobs.transition(
            job.id,
            JobStatus.SUCCEEDED,
            {JobStatus.RUNNING, JobStatus.PAUSED},
            fine_tuned_model=name,
            adapter_path=adapter_dir,
            trained_tokens=int(result["trained_tokens"]),
            result_files=[results.id],
        ):
            self.jobs.add_event(job.id, f"New fine-tuned model created: {name}")
            self.jobs.add_event(job.id, "The job has successfully completed")
        else:
            await adapters.unload(name)
