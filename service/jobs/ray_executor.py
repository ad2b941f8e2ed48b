"""Trainers on a Ray cluster, through Ray's Job Submission API (`OPENTUNE_EXECUTOR=ray`).

Each trainer is an unmodified `python -m trainer SPEC.json` submitted as a Ray job that asks for the
resources a trainer needs (`OPENTUNE_RAY_TRAINER_RESOURCES`, e.g. {"GPU": 1} or a custom
{"trainer": 1}); its JSON-line events come back from the job's log stream, `stop_job` delivers
SIGTERM (the trainer checkpoints and exits, as locally), and a Ray job outlives the gateway that
submitted it: another gateway (or this one, restarted) re-attaches by the submission id stored in
the job row. A trainer lost with its node fails its Ray job; the job is retried from its latest
checkpoint on another node (service/jobs/outcomes.py). The trainer knows nothing of Ray.

The spec and the job's output folder live under the storage root (JobFolders): with object storage
(`OPENTUNE_STORAGE_URL`) the nodes need nothing shared but it (and the AWS_* credentials in their
environment); with the data folder they must share it (one machine, or a shared filesystem).
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import AsyncIterator

from ray.job_submission import JobStatus, JobSubmissionClient

from service.ids import random_token
from service.jobs.executor import JobFolders, Outcome, TrainerExit
from trainer.events import ErrorEvent, ResultEvent, StoppedEvent, TrainerEvent, parse_event
from trainer.spec import TrainingSpec

logger = logging.getLogger(__name__)

# The trainer gets this long to checkpoint after SIGTERM before Ray kills it (Ray's default is 3 s).
STOP_WAIT_S = 60
_POLL_S = 1.0


class RayTrainerRun:
    def __init__(self, client: JobSubmissionClient, job_id: str, submission_id: str) -> None:
        self.client = client
        self.job_id = job_id
        self.ref = submission_id
        self._outcome: Outcome | None = None

    async def events(self) -> AsyncIterator[TrainerEvent]:
        # The job's log, polled from an offset: Ray's log tail ends early for a job not yet running,
        # and starting it again would replay what was read.
        offset, pending, ended = 0, "", False
        while not ended:
            try:
                info = await asyncio.to_thread(self.client.get_job_info, self.ref)
                ended = JobStatus(info.status).is_terminal()  # the log is read once more after the end
                text = await asyncio.to_thread(self.client.get_job_logs, self.ref)
            except RuntimeError as exc:
                # The dashboard hiccuped, the job is not placed yet, or its node is lost with the log.
                logger.info("No log of Ray job %s for now: %s", self.ref, str(exc)[:200])
                if not ended:
                    await asyncio.sleep(_POLL_S)
                continue
            pending += text[offset:]
            offset = len(text)
            *lines, pending = pending.split("\n")
            for line in lines:
                event = parse_event(line)
                if event is None:
                    continue
                if isinstance(event, ResultEvent | ErrorEvent | StoppedEvent):
                    self._outcome = event
                yield event
            if not ended:
                await asyncio.sleep(_POLL_S)

    async def wait(self) -> TrainerExit:
        info = await asyncio.to_thread(self.client.get_job_info, self.ref)
        if self._outcome is None:
            logger.warning("Ray job %s of %s ended %s: %s", self.ref, self.job_id, info.status, info.message)
        return TrainerExit(info.driver_exit_code, self._outcome)

    def stop(self) -> None:
        self._stop_in_background()

    def kill(self) -> None:
        # The Job API has no SIGKILL: stop_job sends SIGTERM, then Ray kills it after STOP_WAIT_S.
        self._stop_in_background()

    def _stop_in_background(self) -> None:
        asyncio.get_running_loop().run_in_executor(None, self._stop_job)

    def _stop_job(self) -> None:
        try:
            self.client.stop_job(self.ref)
        except Exception as exc:  # gone already, or the cluster is unreachable: nothing to stop here
            logger.warning("Stopping Ray job %s failed: %s", self.ref, exc)


class RayExecutor:
    shares_gateway_memory = False  # Ray places a trainer where its resources (a GPU) are free

    def __init__(
        self,
        address: str,
        jobs: str,
        python: str,
        resources: dict[str, float],
    ) -> None:
        self.client = JobSubmissionClient(address)
        self.folders = JobFolders(jobs)
        self.output = self.folders.output
        self.latest_checkpoint_step = self.folders.latest_checkpoint_step
        self.python = python
        self.resources = resources

    async def start(self, spec: TrainingSpec) -> RayTrainerRun:
        spec_location = await asyncio.to_thread(self.folders.write_spec, spec)
        resources = dict(self.resources)
        submission_id = await asyncio.to_thread(
            self.client.submit_job,
            entrypoint=f"{shlex.quote(self.python)} -m trainer {shlex.quote(spec_location)}",
            # A new id per attempt: Ray never reuses one.
            submission_id=f"opentune-{spec.job_id}-{random_token(6)}",
            entrypoint_num_cpus=resources.pop("CPU", 1),
            entrypoint_num_gpus=resources.pop("GPU", 0),
            entrypoint_resources=resources or None,
            runtime_env={"env_vars": {"PYTHONUNBUFFERED": "1", "RAY_JOB_STOP_WAIT_TIME_S": str(STOP_WAIT_S)}},
            metadata={"opentune_job": spec.job_id},
        )
        return RayTrainerRun(self.client, spec.job_id, submission_id)

    async def attach(self, job_id: str, ref: str | None) -> RayTrainerRun | None:
        if not ref:
            return None
        try:
            info = await asyncio.to_thread(self.client.get_job_info, ref)
        except Exception:  # the cluster no longer knows it (restarted): continue from a checkpoint
            logger.warning("Ray job %s of %s is unknown to the cluster", ref, job_id)
            return None
        # Even a Ray job that ended while no gateway watched: its log still holds how it ended.
        logger.info("Re-attached to Ray job %s of %s (%s)", ref, job_id, info.status)
        return RayTrainerRun(self.client, job_id, ref)
