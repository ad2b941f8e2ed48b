"""A job's `integrations`, as OpenAI's: only Weights & Biases exists (`{"type": "wandb", "wandb":
{"project": ..., "name": ..., "entity": ..., "tags": [...]}}`), checked when the job is created and
handed to the trainer as its spec's `wandb` run (trainer/wandb_run.py)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from service.errors import InvalidRequest
from trainer.spec import WandbRun


def wandb_run(integrations: list[dict[str, Any]] | None) -> WandbRun | None:
    """The W&B run the job asks for (InvalidRequest, naming `integrations`, for anything else)."""
    runs = []
    for index, integration in enumerate(integrations or []):
        if not isinstance(integration, dict) or integration.get("type") != "wandb":
            raise InvalidRequest(
                f'integrations[{index}]: the only integration type is "wandb".', param="integrations"
            )
        try:
            runs.append(WandbRun.model_validate(integration.get("wandb")))
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"]) or "wandb"
            raise InvalidRequest(
                f"integrations[{index}].wandb.{where}: {problem['msg']}", param="integrations"
            ) from None
    if len(runs) > 1:
        raise InvalidRequest("integrations: at most one wandb integration per job.", param="integrations")
    return runs[0] if runs else None
