"""Admission (service/jobs/admission.py) as a pure function: a job row and what was found out
about the world give Start, Wait or Fail. No files, engine or process."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from service.jobs.admission import Admission, Fail, Start, Wait, plan
from service.jobs.capacity import BatchSizeLimit
from service.jobs.spec import JobInputs
from service.jobs.training_options import parse_training_options
from service.store import JobRow

ROOT = Path("/srv/opentune")


def _job(**fields: Any) -> JobRow:
    values: dict[str, Any] = {
        "id": "ftjob-1",
        "organization_id": "org-acme",
        "created_at": 1,
        "status": "queued",
        "model": "tiny",
        "base_model": "tiny",
        "model_name": "ft:tiny:acme::AbCd1234",
        "training_file": "file-train",
        "validation_file": None,
        "seed": 7,
        "method_type": "supervised",
        "requested_hyperparameters": {
            "n_epochs": "auto",
            "batch_size": "auto",
            "learning_rate_multiplier": "auto",
        },
        "n_training_examples": 40,
        "job_metadata": None,
    }
    return JobRow(**(values | fields))


def _admission(root: str = str(ROOT), **facts: Any) -> Admission:
    inputs = JobInputs(
        options=parse_training_options({"opentune.lora_rank": "8"}, max_lora_rank=64),
        base_model_path=ROOT / "models" / "tiny",
        training_file=f"{root}/files/file-train",
        validation_file=None,
        output=f"{root}/jobs/ftjob-1/output",
        token_cache_dir=ROOT / "cache" / "acme",
    )
    return Admission(inputs, **facts)


def test_a_job_that_fits_starts_with_a_spec_built_from_its_row_and_inputs() -> None:
    job = _job(requested_hyperparameters={"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 2.0})
    decision = plan(job, _admission())
    assert isinstance(decision, Start)
    spec = decision.spec
    assert (spec.job_id, spec.seed, spec.method) == ("ftjob-1", 7, "supervised")
    assert (spec.n_epochs, spec.batch_size) == (2, 4)
    assert spec.base_model == str(ROOT / "models" / "tiny")
    assert spec.output_dir == ROOT / "jobs" / "ftjob-1" / "output"
    assert spec.token_cache_dir == ROOT / "cache" / "acme"
    assert spec.lora.r == 8 and spec.init_adapter is None
    assert decision.hyperparameters["n_epochs"] == 2 and decision.hyperparameters["batch_size"] == 4
    assert decision.notes == [] and spec.stored is None


def test_a_job_in_object_storage_gets_stored_locations_and_scratch_relative_paths() -> None:
    decision = plan(_job(), _admission(root="s3://bucket/prefix"))
    assert isinstance(decision, Start)
    spec = decision.spec
    assert spec.stored is not None
    assert spec.stored.training_file == "s3://bucket/prefix/files/file-train"
    assert spec.stored.output == "s3://bucket/prefix/jobs/ftjob-1/output"
    assert spec.stored.validation_file is None and spec.stored.init_adapter is None
    # Resolved in the trainer's scratch folder (trainer/staging.py); no gateway-local cache.
    assert not spec.training_file.is_absolute() and not spec.output_dir.is_absolute()
    assert spec.token_cache_dir is None


def test_a_job_continuing_from_a_fine_tuned_model_trains_from_its_adapter() -> None:
    adapter = ROOT / "jobs" / "ftjob-0" / "output" / "adapter"
    facts = _admission()
    facts = replace(facts, inputs=replace(facts.inputs, init_adapter=adapter))
    decision = plan(_job(model="ft:tiny:acme::Prev0001"), facts)
    assert isinstance(decision, Start) and decision.spec.init_adapter == adapter


def test_a_deleted_file_fails_the_job_naming_the_file() -> None:
    decision = plan(_job(validation_file="file-valid"), _admission(missing_file="validation_file"))
    assert decision == Fail(
        "invalid_validation_file",
        "The validation file file-valid was deleted or has expired.",
        "validation_file",
    )


def test_a_job_whose_model_was_deleted_fails() -> None:
    decision = plan(_job(model="ft:tiny:acme::Gone0001"), _admission(model_missing=True))
    assert isinstance(decision, Fail) and decision.code == "model_not_found" and decision.param == "model"


def test_a_job_that_does_not_fit_in_memory_waits() -> None:
    decision = plan(_job(), _admission(memory_shortfall="Waiting for memory: 9.0 GiB needed"))
    assert decision == Wait("Waiting for memory: 9.0 GiB needed")


def test_an_auto_batch_size_is_lowered_to_the_memory_limit_and_says_why() -> None:
    limit = BatchSizeLimit(2, "Batch size 2 (not 8): the longest example has about 900 tokens")
    decision = plan(_job(n_training_examples=4000), _admission(batch_size_limit=limit))
    assert isinstance(decision, Start)
    assert decision.spec.batch_size == 2 and decision.notes == [limit.reason]


def test_hyperparameters_the_trainer_cannot_use_fail_the_job_without_a_trainer() -> None:
    job = _job(method_type="dpo", requested_hyperparameters={"beta": math.nan})
    decision = plan(job, _admission())
    assert isinstance(decision, Fail) and decision.code == "invalid_hyperparameters"
    assert "beta" in decision.message and str(ROOT) not in decision.message


def test_what_fails_is_decided_before_what_waits() -> None:
    # A job whose file is gone must fail now, not wait for memory it will never use.
    decision = plan(_job(), _admission(missing_file="training_file", memory_shortfall="Waiting"))
    assert isinstance(decision, Fail) and decision.code == "invalid_training_file"
