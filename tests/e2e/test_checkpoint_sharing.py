"""Checkpoint permissions through OpenAI's SDK: an organization shares a fine-tuned model's
checkpoint with another, which then lists it, chats with it and starts a job from it, while a third
organization still cannot; deleting the permission takes it away at the next request."""

from __future__ import annotations

import io

import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import BASE_MODEL, Server
from tests.e2e.jobs import wait_for_job
from tests.e2e.test_tenancy import _create_key
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e


def _client(server: Server, organization: str) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key=_create_key(server, organization), max_retries=0)


def _chat(client: OpenAI, model: str) -> str | None:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    return reply.choices[0].message.content


def test_a_shared_checkpoint_is_usable_by_the_organization_it_is_shared_with_only(server: Server) -> None:
    owner, friend, stranger = (
        _client(server, name) for name in ("share-owner", "share-friend", "share-other")
    )
    data = io.BytesIO(jsonl(training_examples(10)))
    file = owner.files.create(file=("s.jsonl", data), purpose="fine-tune")
    job = owner.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=file.id, hyperparameters={"n_epochs": 2, "batch_size": 5}
    )
    assert wait_for_job(owner, job.id).status == "succeeded"
    checkpoint = owner.fine_tuning.jobs.checkpoints.list(job.id).data[-1].fine_tuned_model_checkpoint
    for outsider in (friend, stranger):
        with pytest.raises(openai.NotFoundError):
            _chat(outsider, checkpoint)

    permissions = owner.fine_tuning.checkpoints.permissions
    granted = permissions.create(checkpoint, project_ids=["org-share-friend"]).data
    assert [(p.object, p.project_id) for p in granted] == [("checkpoint.permission", "org-share-friend")]
    assert [p.id for p in permissions.list(checkpoint)] == [granted[0].id]
    with pytest.warns(DeprecationWarning):  # the SDK's older name for the same GET
        assert permissions.retrieve(checkpoint).data[0].project_id == "org-share-friend"

    assert checkpoint in [m.id for m in friend.models.list()]
    assert _chat(friend, checkpoint) is not None
    friend_file = friend.files.create(
        file=("f.jsonl", io.BytesIO(jsonl(training_examples(10)))), purpose="fine-tune"
    )
    continued = friend.fine_tuning.jobs.create(model=checkpoint, training_file=friend_file.id)
    friend.fine_tuning.jobs.cancel(continued.id)  # accepted is what this test needs
    with pytest.raises(openai.NotFoundError):
        _chat(stranger, checkpoint)
    assert checkpoint not in [m.id for m in stranger.models.list()]
    with pytest.raises(openai.NotFoundError):  # the grantee can neither see nor pass on the grants
        friend.fine_tuning.checkpoints.permissions.create(checkpoint, project_ids=["org-share-other"])
    with pytest.raises(openai.NotFoundError):
        friend.models.delete(checkpoint)
    with pytest.raises(openai.BadRequestError):
        permissions.create(checkpoint, project_ids=["org-no-such-organization"])

    deleted = permissions.delete(granted[0].id, fine_tuned_model_checkpoint=checkpoint)
    assert (deleted.id, deleted.deleted) == (granted[0].id, True)
    with pytest.raises(openai.NotFoundError):
        _chat(friend, checkpoint)
    assert checkpoint not in [m.id for m in friend.models.list()]
    assert _chat(owner, checkpoint) is not None
