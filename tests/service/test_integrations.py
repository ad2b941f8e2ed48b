"""A job's integrations (service/jobs/integrations.py): a W&B run or a clear 400 naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from service.errors import InvalidRequest
from service.jobs.integrations import wandb_run


def test_a_wandb_integration_becomes_the_trainers_run() -> None:
    run = wandb_run([{"type": "wandb", "wandb": {"project": "p", "name": "n", "entity": "e", "tags": ["a"]}}])
    assert run is not None and (run.project, run.name, run.entity, run.tags) == ("p", "n", "e", ["a"])
    assert wandb_run(None) is None and wandb_run([]) is None


@pytest.mark.parametrize(
    ("integrations", "says"),
    [
        ([{"type": "comet"}], 'the only integration type is "wandb"'),
        (["wandb"], 'the only integration type is "wandb"'),
        ([{"type": "wandb"}], "integrations[0].wandb"),
        ([{"type": "wandb", "wandb": {"name": "no project"}}], "wandb.project"),
        ([{"type": "wandb", "wandb": {"project": ""}}], "wandb.project"),
        ([{"type": "wandb", "wandb": {"project": "p", "tags": "not a list"}}], "wandb.tags"),
        ([{"type": "wandb", "wandb": {"project": "p"}}] * 2, "at most one"),
    ],
)
def test_anything_else_is_a_400_naming_integrations(integrations: list[Any], says: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        wandb_run(integrations)
    assert refused.value.param == "integrations" and says in refused.value.message
