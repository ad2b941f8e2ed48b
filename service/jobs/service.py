"""Fine-tuning job operations behind the API: create (with its checks), cancel, read."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from service.catalog import ModelCatalog
from service.errors import InvalidRequest, NotFound
from service.files import FileStore
from service.ids import new_id
from service.jobs.eval_grader import check_eval_grader, eval_grader_of
from service.jobs.integrations import wandb_run
from service.jobs.job_wire import to_wire
from service.jobs.naming import fine_tuned_model_name, is_valid_suffix
from service.jobs.quotas import JobLimits, check_active_jobs, check_integrations, check_trained_tokens
from service.jobs.reinforcement import check_method
from service.jobs.scheduler import JobScheduler
from service.jobs.states import JobStatus
from service.jobs.store import JobStore
from service.jobs.training_options import parse_training_options
from service.protocol.fine_tuning import (
    CreateFineTuningJobRequest,
    DpoHyperparameters,
    FineTuningJob,
    Hyperparameters,
)
from service.store import FileRow, JobRow
from trainer.graders import GradingContext

MAX_METADATA_PAIRS = 16


class FineTuningService:
    def __init__(
        self,
        jobs: JobStore,
        files: FileStore,
        catalog: ModelCatalog,
        scheduler: JobScheduler,
        max_lora_rank: int,
        limits: JobLimits | None = None,
        grading: Callable[[str], GradingContext] | None = None,
    ) -> None:
        self.max_lora_rank = max_lora_rank
        # Per-organization limits; None: none (tests that do not exercise them).
        self.limits = limits
        self.jobs = jobs
        self.files = files
        self.catalog = catalog
        self.scheduler = scheduler
        # An organization's grading, to check reinforcement jobs' graders (a python grader's sandbox,
        # a model grader's model); None: no reinforcement.
        self.grading = grading

    def create(self, org_id: str, request: CreateFineTuningJobRequest) -> FineTuningJob:
        method_type, hyperparameters = _method_of(request)
        method_options = self._method_options(org_id, request)
        base = self.catalog.trainable(org_id, request.model).base
        training_file = self._check_file(org_id, request.training_file, "training_file")
        if request.validation_file:
            self._check_file(org_id, request.validation_file, "validation_file")
        if request.suffix is not None and not is_valid_suffix(request.suffix):
            raise InvalidRequest(
                "suffix may contain only letters, digits, '-', '_' and '.' (1 to 64 characters).",
                param="suffix",
            )
        _check_metadata(request.metadata)
        parse_training_options(request.metadata, self.max_lora_rank)
        eval_grader_of(request.metadata)  # the evaluation report's grader (eval_grader.py)
        if self.grading is not None:
            check_eval_grader(request.metadata, self.grading(org_id))
        wandb_run(request.integrations)
        if self.limits is not None:
            check_integrations(self.limits, request.integrations)
            check_trained_tokens(self.limits, training_file.bytes, hyperparameters.n_epochs)
            # Last, so that a request that is wrong anyway gets told so first. Count, then insert:
            # two concurrent requests may both pass, overshooting by one at most per request.
            check_active_jobs(self.limits, self.jobs.count_active(org_id))
        organization = org_id.removeprefix("org-")
        row = JobRow(
            id=new_id("ftjob"),
            organization_id=org_id,
            created_at=int(time.time()),
            status=JobStatus.VALIDATING_FILES.value,
            model=request.model,
            base_model=base,
            model_name=fine_tuned_model_name(base, organization, request.suffix),
            training_file=request.training_file,
            validation_file=request.validation_file,
            suffix=request.suffix,
            seed=request.seed if request.seed is not None else secrets.randbelow(2**31),
            method_type=method_type,
            requested_hyperparameters=hyperparameters.model_dump(),
            method_options=method_options,
            job_metadata=request.metadata,
            integrations=request.integrations or [],
            result_files=[],
        )
        self.jobs.insert(row)
        files = f"training file: {row.training_file}"
        if row.validation_file:
            files += f" and validation file: {row.validation_file}"
        self.jobs.add_event(row.id, f"Validating {files}")
        self.scheduler.notify()
        return to_wire(row)

    def _method_options(self, org_id: str, request: CreateFineTuningJobRequest) -> dict[str, Any] | None:
        """What the job keeps of its method besides hyperparameters: reinforcement's grader."""
        method = request.method
        if method is None or method.type != "reinforcement" or method.reinforcement is None:
            return None
        if self.grading is None:
            raise InvalidRequest(
                "Reinforcement fine-tuning is not enabled on this server.", param="method.type"
            )
        return check_method(method.reinforcement, self.grading(org_id))

    def _check_file(self, org_id: str, file_id: str, param: str) -> FileRow:
        try:
            row = self.files.get(org_id, file_id)
        except NotFound:
            raise InvalidRequest(f"invalid {param}: {file_id} (no such file)", param=param) from None
        if row.purpose != "fine-tune":
            raise InvalidRequest(
                f"invalid {param}: {file_id} has purpose '{row.purpose}'; fine-tuning needs 'fine-tune'.",
                param=param,
            )
        return row

    def retrieve(self, org_id: str, job_id: str) -> FineTuningJob:
        return to_wire(self.jobs.get(org_id, job_id))

    def _move(
        self,
        org_id: str,
        job_id: str,
        target: JobStatus,
        verb: str,
        event: str,
        only_from: set[JobStatus] | None = None,
    ) -> FineTuningJob:
        """Apply a user-requested transition; 400 (never 409, which the SDK retries) when not allowed."""
        self.jobs.get(org_id, job_id)
        if not self.jobs.transition(job_id, target, only_from, [event]):
            current = self.jobs.get(org_id, job_id).status
            raise InvalidRequest(
                f"Job {job_id} is {current} and cannot be {verb}.", param="fine_tuning_job_id"
            )
        return to_wire(self.jobs.get(org_id, job_id))

    def cancel(self, org_id: str, job_id: str) -> FineTuningJob:
        job = self._move(org_id, job_id, JobStatus.CANCELLED, "cancelled", "Job was cancelled")
        self.scheduler.stop_trainer(job_id)
        return job

    def pause(self, org_id: str, job_id: str) -> FineTuningJob:
        """running -> paused: the trainer saves a checkpoint and exits."""
        job = self._move(org_id, job_id, JobStatus.PAUSED, "paused", "Fine-tuning job paused")
        self.scheduler.stop_trainer(job_id)
        return job

    def resume(self, org_id: str, job_id: str) -> FineTuningJob:
        """paused -> queued; the trainer continues from the pause checkpoint when it starts again."""
        job = self._move(
            org_id,
            job_id,
            JobStatus.QUEUED,
            "resumed",
            "Fine-tuning job resumed",
            only_from={JobStatus.PAUSED},
        )
        self.scheduler.notify()
        return job


def _method_of(request: CreateFineTuningJobRequest) -> tuple[str, Hyperparameters]:
    """The method type and its hyperparameters, from `method` or the legacy top-level form."""
    method = request.method
    if method is None or method.type == "supervised":
        if method is not None and method.supervised is not None:
            return "supervised", method.supervised.hyperparameters
        return "supervised", request.hyperparameters or Hyperparameters()
    if method.type == "dpo":
        return "dpo", method.dpo.hyperparameters if method.dpo is not None else DpoHyperparameters()
    if method.reinforcement is None:
        raise InvalidRequest(
            "method.reinforcement.grader is required when method.type is 'reinforcement'.",
            param="method.reinforcement.grader",
        )
    return "reinforcement", method.reinforcement.hyperparameters


def _check_metadata(metadata: dict[str, str] | None) -> None:
    if not metadata:
        return
    if len(metadata) > MAX_METADATA_PAIRS:
        raise InvalidRequest(f"metadata may have at most {MAX_METADATA_PAIRS} pairs.", param="metadata")
    for key, value in metadata.items():
        if len(key) > 64 or len(value) > 512:
            raise InvalidRequest(
                "metadata keys are at most 64 characters and values at most 512.", param="metadata"
            )
