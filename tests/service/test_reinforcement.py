"""Reinforcement jobs on the gateway's side: the method checked (its grader by the graders
library), kept on the job row and echoed as sent, hyperparameters resolved, the trainer's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.catalog import ModelCatalog
from service.engine.limits import ChatLimits
from service.errors import InvalidRequest
from service.graders import EngineModels
from service.jobs.checkpoints import CheckpointStore
from service.jobs.hyperparameters import resolve_hyperparameters
from service.jobs.job_wire import to_wire
from service.jobs.model_records import JobModelRecords
from service.jobs.reinforcement import check_method, settings_for
from service.jobs.store import JobStore
from service.jobs.training_options import parse_training_options
from service.protocol.fine_tuning import CreateFineTuningJobRequest, ReinforcementMethod
from service.store import Database, JobRow
from tests.service.fake_engine import FakeEngine, fake_fleet
from trainer.graders import GradingContext

STRING_CHECK = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "operation": "eq",
}


def _method(grader: dict[str, Any], **hyperparameters: Any) -> ReinforcementMethod:
    return ReinforcementMethod.model_validate({"grader": grader, "hyperparameters": hyperparameters})


def test_a_valid_grader_is_kept_as_sent() -> None:
    options = check_method(_method(STRING_CHECK), GradingContext())
    assert options == {"grader": STRING_CHECK}


@pytest.mark.parametrize(
    ("grader", "param"),
    [
        ({**STRING_CHECK, "operation": "gt"}, "method.reinforcement.grader.operation"),
        (  # no model to grade with in this context (the gateway's has the organization's models)
            {
                "type": "score_model",
                "name": "s",
                "model": "tiny",
                "input": [{"role": "user", "content": "x"}],
            },
            "method.reinforcement.grader",
        ),
        (
            {
                "type": "multi",
                "name": "m",
                "calculate_output": "a",
                "graders": {"a": {"type": "label_model"}},
            },
            None,  # somewhere under method.reinforcement.grader.graders.a
        ),
        ({"type": "python", "name": "p", "source": "def grade(sample, item): return 1"}, None),
    ],
)
def test_graders_the_training_cannot_use_are_refused(grader: dict[str, Any], param: str | None) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_method(_method(grader), GradingContext())  # no sandbox here: python graders refused
    assert refused.value.param is not None and refused.value.param.startswith("method.reinforcement.grader")
    if param is not None:
        assert refused.value.param == param


def _organization_grading(tmp_path: Path) -> GradingContext:
    """The gateway's grading for org-a (service/graders.py): its models are the served base `tiny`
    and its own fine-tuned ones (none here)."""
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    fleet = fake_fleet(FakeEngine(), "tiny")
    catalog = ModelCatalog(JobModelRecords(JobStore(db), CheckpointStore(db)), fleet, started_at=0)
    return GradingContext(models=EngineModels(catalog, fleet, ChatLimits(None), "org-a"))


def test_model_graders_on_a_model_the_organization_can_use_are_kept(tmp_path: Path) -> None:
    label = {
        "type": "label_model",
        "name": "polite",
        "model": "tiny",
        "input": [{"role": "user", "content": "Polite? {{sample.output_text}}"}],
        "labels": ["yes", "no"],
        "passing_labels": ["yes"],
    }
    grading = _organization_grading(tmp_path)
    assert check_method(_method(label), grading) == {"grader": label}
    multi = {
        "type": "multi",
        "name": "m",
        "calculate_output": "a + b",
        "graders": {"a": label, "b": STRING_CHECK},
    }
    assert check_method(_method(multi), grading) == {"grader": multi}
    with pytest.raises(InvalidRequest) as refused:
        check_method(_method({**label, "model": "gpt-4o"}), grading)
    assert refused.value.param == "method.reinforcement.grader.model"
    assert refused.value.code == "model_not_found"
    with pytest.raises(InvalidRequest) as refused:
        check_method(_method({**multi, "graders": {"a": {**label, "model": "ft:tiny:b::x"}}}), grading)
    assert refused.value.param == "method.reinforcement.grader.graders.a.model"


def test_a_response_format_is_checked_and_reaches_the_trainer() -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "d", "schema": {"type": "object"}}}
    method = ReinforcementMethod.model_validate({"grader": STRING_CHECK, "response_format": schema})
    options = check_method(method, GradingContext())
    assert options["response_format"] == schema
    resolved = resolve_hyperparameters({}, n_examples=40, method="reinforcement")
    training = parse_training_options({}, max_lora_rank=64)
    assert settings_for(options, resolved, training).response_format == schema
    no_schema = {"type": "json_schema", "json_schema": {"schema": 1}}
    for bad in ({"type": "xml"}, {"type": "json_schema"}, no_schema):
        wrong = ReinforcementMethod.model_validate({"grader": STRING_CHECK, "response_format": bad})
        with pytest.raises(InvalidRequest) as refused:
            check_method(wrong, GradingContext())
        assert refused.value.param == "method.reinforcement.response_format"


def test_hyperparameters_resolve_with_reinforcements_own() -> None:
    requested = _method(STRING_CHECK, compute_multiplier=2, eval_samples=3).hyperparameters.model_dump()
    resolved = resolve_hyperparameters(requested, n_examples=40, method="reinforcement")
    assert (resolved.samples_per_prompt, resolved.eval_samples) == (8, 3)
    assert resolved.eval_interval == max(1, 40 // resolved.batch_size * resolved.n_epochs // 10)
    wire = resolved.to_wire()
    assert wire["compute_multiplier"] == 2 and wire["reasoning_effort"] == "default"
    options = parse_training_options({"opentune.temperature": "0.5"}, max_lora_rank=64)
    settings = settings_for({"grader": STRING_CHECK}, resolved, options)
    assert (settings.num_generations, settings.eval_samples, settings.grader) == (8, 3, STRING_CHECK)
    assert (settings.temperature, settings.max_completion_tokens) == (0.5, 64)
    supervised = resolve_hyperparameters({}, n_examples=40)
    assert "compute_multiplier" not in supervised.to_wire()


def test_a_reinforcement_job_echoes_its_method() -> None:
    request = CreateFineTuningJobRequest.model_validate(
        {
            "model": "tiny",
            "training_file": "file-1",
            "method": {"type": "reinforcement", "reinforcement": {"grader": STRING_CHECK}},
        }
    )
    assert request.method is not None and request.method.reinforcement is not None
    row = JobRow(
        id="ftjob-1",
        organization_id="org-a",
        created_at=1,
        status="queued",
        model="tiny",
        base_model="tiny",
        model_name="ft:tiny:a::x",
        training_file="file-1",
        seed=1,
        method_type="reinforcement",
        requested_hyperparameters=request.method.reinforcement.hyperparameters.model_dump(),
        method_options={"grader": STRING_CHECK},
        integrations=[],
        result_files=[],
    )
    method = to_wire(row).method
    assert method.type == "reinforcement" and method.reinforcement is not None
    assert method.reinforcement.grader == STRING_CHECK
    assert method.reinforcement.hyperparameters.eval_interval == "auto"
