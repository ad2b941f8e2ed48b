"""What admission (service/jobs/admission.py) needs to know about one queued job, found out: its
files, the model it continues from, where its trainer reads and writes, and the free memory.
Blocking (database, disk, memory probes): the scheduler calls `gather` in a worker thread."""

from __future__ import annotations

from pathlib import Path

from service.catalog import ModelCatalog
from service.config import Settings
from service.engine.fleet import EngineFleet
from service.errors import NotFound
from service.files import FileStore
from service.jobs.admission import Admission
from service.jobs.capacity import BatchSizeLimit, memory_batch_limit, memory_shortfall
from service.jobs.executor import TrainerExecutor
from service.jobs.housekeeping import Housekeeping
from service.jobs.hyperparameters import default_batch_size, is_auto
from service.jobs.spec import JobInputs
from service.jobs.training_options import TrainingOptions, parse_training_options
from service.store import JobRow
from trainer import storage


class AdmissionInputs:
    def __init__(
        self,
        settings: Settings,
        files: FileStore,
        catalog: ModelCatalog,
        fleet: EngineFleet,
        executor: TrainerExecutor,
        housekeeping: Housekeeping,
    ) -> None:
        self.settings = settings
        self.files = files
        self.catalog = catalog
        self.fleet = fleet
        self.executor = executor
        self.housekeeping = housekeeping

    def gather(self, job: JobRow) -> Admission:
        options = parse_training_options(job.job_metadata, self.settings.engine_max_lora_rank)
        base_path = self.fleet.get(job.base_model).model_path
        init_adapter, model_missing = self._adapter_to_continue(job)
        inputs = JobInputs(
            options=options,
            base_model_path=base_path,
            training_file=self.files.location_of(job.training_file),
            validation_file=self.files.location_of(job.validation_file) if job.validation_file else None,
            output=self.executor.output(job.id),
            token_cache_dir=self.housekeeping.token_cache_dir(job.organization_id),
            init_adapter=init_adapter,
        )
        missing = self._missing_file(job)
        if missing or model_missing:
            return Admission(inputs, missing_file=missing, model_missing=model_missing)
        if not self.executor.shares_gateway_memory:
            return Admission(inputs)  # this machine's memory says nothing of where it will run
        shortfall = memory_shortfall(base_path, self.settings.trainer_memory_gib)
        if shortfall is not None:
            return Admission(inputs, memory_shortfall=shortfall)
        return Admission(inputs, batch_size_limit=self._batch_size_limit(job, base_path, options))

    def _missing_file(self, job: JobRow) -> str | None:
        for file_id, param in (
            (job.training_file, "training_file"),
            (job.validation_file, "validation_file"),
        ):
            if file_id and not self.files.usable(job.organization_id, file_id):
                return param
        return None

    def _adapter_to_continue(self, job: JobRow) -> tuple[str | None, bool]:
        """The adapter of the fine-tuned model the job continues from (None for a base model), and
        whether that model is gone."""
        if job.model == job.base_model:
            return None, False
        try:
            served = self.catalog.resolve(job.organization_id, job.model)
        except NotFound:
            return None, True
        if not served.adapter_path or not storage.exists(served.adapter_path):
            return None, True
        return served.adapter_path, False

    def _batch_size_limit(
        self, job: JobRow, base_path: Path, options: TrainingOptions
    ) -> BatchSizeLimit | None:
        """An "auto" batch size lowered to fit the free memory (capacity.py), or None. Uses the
        longest example counted at validation: the training file is not read here."""
        if not is_auto(job.requested_hyperparameters, "batch_size") or job.longest_example_tokens is None:
            return None
        upper = default_batch_size(job.n_training_examples or 0)
        return memory_batch_limit(base_path, job.longest_example_tokens, options.lora.r, upper)
