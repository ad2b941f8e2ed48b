"""Reinforcement jobs on the gateway's side: the method checked (its grader by the graders
library), kept on the job row and echoed as sent, hyperparameters resolved, the trainer's settings."""

from __future__ import annotations

from typing import Any

import pytest

from service.errors import InvalidRequest
from service.jobs.hyperparameters import resolve_hyperparameters
from service.jobs.job_wire import to_wire
from service.jobs.reinforcement import check_method, settings_for
from service.jobs.training_options import parse_training_options
from service.protocol.fine_tuning import CreateFineTuningJobRequest, ReinforcementMethod
from service.store import JobRow
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
        ({"type": "score_model", "name": "s", "model": "tiny", "input": []}, "method.reinforcement.grader"),
        (
            {
                "type": "multi",
                "name": "m",
                "calculate_output": "a",
                "graders": {"a": {"type": "label_model"}},
            },
            "method.reinforcement.grader",
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
