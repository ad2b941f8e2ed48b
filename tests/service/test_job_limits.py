"""Checks at job creation (service/jobs/service.py on a real database and file store): hyperparameter
ranges, suffix, and the per-organization limits (active jobs, trained tokens, integrations)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from service.catalog import ModelCatalog
from service.config import Settings
from service.engine.adapters import AdapterRegistry
from service.engine.client import EngineClient
from service.engine.fleet import EngineFleet
from service.errors import InvalidRequest, QuotaExceeded
from service.files import FileStore
from service.jobs.checkpoints import CheckpointStore
from service.jobs.local_executor import LocalProcessExecutor
from service.jobs.model_records import JobModelRecords
from service.jobs.naming import is_valid_suffix
from service.jobs.quotas import JobLimits
from service.jobs.scheduler import JobScheduler
from service.jobs.service import FineTuningService
from service.jobs.states import JobStatus
from service.jobs.store import JobStore
from service.protocol.fine_tuning import CreateFineTuningJobRequest
from service.store import Database
from tests.service.fake_engine import one_replica

LIMITS = JobLimits(max_active_jobs=3, max_trained_tokens=10_000, max_integrations_bytes=200)


@pytest.fixture
def service(tmp_path: Path) -> FineTuningService:
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    settings = Settings(data_dir=tmp_path)
    client = EngineClient("http://127.0.0.1:9")  # never called: creating a job does not touch the engine
    fleet = EngineFleet([one_replica("tiny", tmp_path, client, AdapterRegistry(client, 2))])
    jobs, checkpoints, files = JobStore(db), CheckpointStore(db), FileStore(db, str(tmp_path / "files"))
    catalog = ModelCatalog(JobModelRecords(jobs, checkpoints), fleet, started_at=0)
    scheduler = JobScheduler(
        settings,
        jobs,
        checkpoints,
        files,
        catalog,
        fleet,
        LocalProcessExecutor(str(tmp_path / "jobs"), tmp_path / "jobs"),
    )
    return FineTuningService(jobs, files, catalog, scheduler, 64, limits=LIMITS)


def _upload(service: FineTuningService, org: str, size: int = 1000) -> str:
    return service.files.create(org, io.BytesIO(b"x" * size), "t.jsonl", "fine-tune").id


def _request(training_file: str, **fields: Any) -> CreateFineTuningJobRequest:
    return CreateFineTuningJobRequest.model_validate(
        {"model": "tiny", "training_file": training_file, **fields}
    )


def test_active_jobs_per_organization_are_capped_and_finished_ones_free_a_place(
    service: FineTuningService,
) -> None:
    training = _upload(service, "org-a")
    made = [service.create("org-a", _request(training)) for _ in range(3)]
    with pytest.raises(QuotaExceeded) as refused:
        service.create("org-a", _request(training))
    assert refused.value.status_code == 429 and refused.value.code == "quota_exceeded"
    assert service.create("org-b", _request(_upload(service, "org-b"))).status == "validating_files"
    service.cancel("org-a", made[0].id)
    service.create("org-a", _request(training))
    # Every active state counts: queued, running and paused jobs hold their places too.
    service.jobs.transition(made[1].id, JobStatus.QUEUED)
    service.jobs.transition(made[2].id, JobStatus.RUNNING)
    service.jobs.transition(made[2].id, JobStatus.PAUSED)
    assert service.jobs.count_active("org-a") == 3
    with pytest.raises(QuotaExceeded):
        service.create("org-a", _request(training))


def test_trained_tokens_bound_is_file_bytes_times_epochs(service: FineTuningService) -> None:
    training = _upload(service, "org-a", size=2000)
    service.create("org-a", _request(training, hyperparameters={"n_epochs": 5}))  # 10,000: allowed
    with pytest.raises(InvalidRequest) as refused:
        service.create("org-a", _request(training, hyperparameters={"n_epochs": 6}))
    assert refused.value.code == "job_too_large" and refused.value.param == "training_file"
    big = _upload(service, "org-a", size=4000)
    with pytest.raises(InvalidRequest):  # "auto" counts as 3 epochs: 12,000
        service.create("org-a", _request(big))


def test_integrations_size_is_capped(service: FineTuningService) -> None:
    training = _upload(service, "org-a")
    small = [{"type": "wandb", "wandb": {"project": "p"}}]
    service.create("org-a", _request(training, integrations=small))
    large = [{"type": "wandb", "wandb": {"project": "p" * 200}}]
    assert len(json.dumps(large)) > LIMITS.max_integrations_bytes
    with pytest.raises(InvalidRequest) as refused:
        service.create("org-a", _request(training, integrations=large))
    assert refused.value.param == "integrations"


@pytest.mark.parametrize("suffix", ["abc\n", "a b", "a:b", "x" * 65, "é"])
def test_bad_suffix_is_refused(service: FineTuningService, suffix: str) -> None:
    assert not is_valid_suffix(suffix)
    with pytest.raises((InvalidRequest, ValidationError)):
        service.create("org-a", _request(_upload(service, "org-a"), suffix=suffix))


def test_good_suffix_passes() -> None:
    assert is_valid_suffix("my-model_v1.2") and is_valid_suffix("x" * 64)


@pytest.mark.parametrize(
    ("method", "param", "value"),
    [
        ("supervised", "n_epochs", 0),
        ("supervised", "n_epochs", 51),
        ("supervised", "n_epochs", 2.5),
        ("supervised", "n_epochs", "lots"),
        ("supervised", "batch_size", 257),
        ("supervised", "batch_size", True),
        ("supervised", "learning_rate_multiplier", 0),
        ("supervised", "learning_rate_multiplier", math.inf),
        ("supervised", "learning_rate_multiplier", math.nan),
        ("supervised", "learning_rate_multiplier", "Auto"),
        ("dpo", "beta", -5),
        ("dpo", "beta", 0),
        ("dpo", "beta", 2.5),
        ("dpo", "beta", math.nan),
        ("dpo", "beta", math.inf),
    ],
)
def test_hyperparameter_out_of_range_names_the_parameter(method: str, param: str, value: Any) -> None:
    body = {"type": method, method: {"hyperparameters": {param: value}}}
    with pytest.raises(ValidationError) as refused:
        _request("file-x", method=body)
    errors = refused.value.errors()
    assert len(errors) == 1
    assert errors[0]["loc"] == ("method", method, "hyperparameters", param)


@pytest.mark.parametrize(
    ("method", "hyperparameters"),
    [
        ("supervised", {"n_epochs": 1, "batch_size": 256, "learning_rate_multiplier": 0.01}),
        ("supervised", {"n_epochs": 50, "batch_size": "auto", "learning_rate_multiplier": 10}),
        ("dpo", {"beta": 2, "n_epochs": "auto"}),
        ("dpo", {"beta": 0.1, "learning_rate_multiplier": "auto"}),
    ],
)
def test_hyperparameters_in_range_pass(method: str, hyperparameters: dict[str, Any]) -> None:
    _request("file-x", method={"type": method, method: {"hyperparameters": hyperparameters}})
