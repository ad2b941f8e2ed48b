"""Conformance with OpenAI's API as its clients see it.

Two views of every call the server supports:

- the stock openai SDK (a sync client, an `AsyncOpenAI` client, and a client with
  `_strict_response_validation=True`, which validates every response against the SDK's own types);
- the raw JSON bodies (fetched with httpx), validated against OpenAI's OpenAPI schemas, copied
  unchanged into tests/fixtures/openai-openapi-subset.yaml.

One small job is trained to success in this module, so jobs, events, checkpoints, result files and
fine-tuned models are checked in their final shape. No test changes it: the tests that delete models
delete those of a second job (`disposable`), each a model no other test reads, so the tests pass in any
order.
"""

from __future__ import annotations

import asyncio
import copy
import csv
import io
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from jsonschema import Draft202012Validator
from openai import AsyncOpenAI, OpenAI
from openai.types.fine_tuning import FineTuningJob
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.e2e.conftest import API_KEY, BASE_MODEL, Server
from tests.e2e.jobs import wait_for_job
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e

SPEC_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "openai-openapi-subset.yaml"
SPEC_URI = "urn:openai:openapi-subset"

# What the trained job was asked for: 12 examples x 2 epochs at batch 4 = 6 steps, one checkpoint per
# epoch (steps 3 and 6). LR = 15 x 2e-4, as in test_workflow.
N_EXAMPLES, N_EPOCHS, BATCH_SIZE, LR_MULTIPLIER = 12, 2, 4, 15
STEPS = N_EXAMPLES * N_EPOCHS // BATCH_SIZE
SUFFIX = "conformance"
SEED = 1234
FT_NAME = re.compile(rf"ft:{BASE_MODEL}:default:{SUFFIX}:[A-Za-z0-9]{{8}}")
# The disposable job: 10 examples x 3 epochs at batch 5, a checkpoint per epoch (steps 2, 4 and 6).
# The raw `model-delete` case deletes the epoch-1 checkpoint, the delete test the epoch-2 one and the
# model; the epoch-3 one stays. Each deletes what no other test touches, so any order works.
DISPOSABLE_EXAMPLES, DISPOSABLE_EPOCHS, DISPOSABLE_BATCH_SIZE = 10, 3, 5
DISPOSABLE_STEPS_PER_EPOCH = DISPOSABLE_EXAMPLES // DISPOSABLE_BATCH_SIZE
RESULT_COLUMNS = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]

# Where we deliberately send something OpenAI's schema does not allow. Bodies are validated against
# the schema with exactly these properties also allowed to be null, and
# `test_known_deviations_from_openai_schema_are_exactly_these` checks the unmodified schema rejects
# those bodies on these properties and nothing else, so the list can neither hide more nor go stale.
KNOWN_DEVIATIONS: dict[tuple[str, str], str] = {
    ("OpenAIFile", "expires_at"): "null for a file that never expires (the spec: integer, optional)",
    ("OpenAIFile", "status_details"): "null, as OpenAI itself sends (the spec: string, optional)",
    ("ListFilesResponse", "first_id"): "null on an empty page (the spec: a required string)",
    ("ListFilesResponse", "last_id"): "null on an empty page (the spec: a required string)",
}


# --- OpenAI's schemas, as JSON Schema 2020-12 -------------------------------------------------------


def _as_json_schema_2020_12(node: Any) -> Any:
    """OpenAI's document says OpenAPI 3.1 (JSON Schema 2020-12) but still uses two OpenAPI 3.0
    keywords, which 2020-12 reads differently from what they mean. Translate them, and nothing else:

    - `nullable: true`: ignored by 2020-12, so `logprobs: {type: object, nullable: true}` would
      reject null. Becomes `anyOf: [<schema>, {type: null}]`.
    - boolean `exclusiveMinimum: true` next to `minimum: 0`: 2020-12 takes the boolean as the number 1,
      so `learning_rate_multiplier: 1.0` would fail. Becomes `exclusiveMinimum: 0`.
    """
    if isinstance(node, list):
        return [_as_json_schema_2020_12(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _as_json_schema_2020_12(value) for key, value in node.items()}
    for bound in ("minimum", "maximum"):
        exclusive = f"exclusive{bound.capitalize()}"
        if node.get(exclusive) is True and bound in node:
            node[exclusive] = node.pop(bound)
        elif node.get(exclusive) is False:
            del node[exclusive]
    if node.get("nullable") is True:
        del node["nullable"]
        return {"anyOf": [node, {"type": "null"}]}
    return node


@cache
def _spec() -> dict[str, Any]:
    spec = _as_json_schema_2020_12(yaml.safe_load(SPEC_PATH.read_text()))
    assert isinstance(spec, dict)
    return spec


@cache
def _registry(with_deviations: bool) -> Registry:
    spec = _spec()
    if with_deviations:
        spec = copy.deepcopy(spec)
        for schema, prop in KNOWN_DEVIATIONS:
            properties = spec["components"]["schemas"][schema]["properties"]
            properties[prop] = {"anyOf": [properties[prop], {"type": "null"}]}
    resource = Resource.from_contents(spec, default_specification=DRAFT202012)
    return Registry().with_resource(SPEC_URI, resource)


def schema_errors(name: str, body: Any, *, with_deviations: bool = True) -> list[str]:
    """Where `body` breaks OpenAI's `#/components/schemas/<name>`, one line per error."""
    assert name in _spec()["components"]["schemas"], name
    validator = Draft202012Validator(
        {"$ref": f"{SPEC_URI}#/components/schemas/{name}"}, registry=_registry(with_deviations)
    )
    errors = sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}" for e in errors]


def assert_schema(name: str, body: Any) -> None:
    errors = schema_errors(name, body)
    assert not errors, f"body does not match OpenAI's {name}:\n  " + "\n  ".join(errors) + f"\n{body}"


# --- Fixtures ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trained:
    """The module's job, run to success, and what it was made from."""

    created: FineTuningJob  # as `create` returned it
    job: FineTuningJob  # as `retrieve` returns it once succeeded
    training_file: str
    validation_file: str
    tag: str  # the `metadata["tag"]` of every job this module creates

    @property
    def model(self) -> str:
        assert self.job.fine_tuned_model is not None
        return self.job.fine_tuned_model

    def checkpoint(self, step: int) -> str:
        return f"{self.model}:ckpt-step-{step}"


def _upload(client: OpenAI, name: str, examples: int, seed: int = 0) -> str:
    data = jsonl(training_examples(examples, seed=seed))
    return client.files.create(file=(name, io.BytesIO(data)), purpose="fine-tune").id


@pytest.fixture(scope="module")
def trained(client: OpenAI) -> Trained:
    tag = uuid.uuid4().hex[:12]
    training_file = _upload(client, "conformance-train.jsonl", N_EXAMPLES)
    validation_file = _upload(client, "conformance-valid.jsonl", 10, seed=1)
    created = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=training_file,
        validation_file=validation_file,
        suffix=SUFFIX,
        seed=SEED,
        metadata={"suite": "conformance", "tag": tag},
        method={
            "type": "supervised",
            "supervised": {
                "hyperparameters": {
                    "n_epochs": N_EPOCHS,
                    "batch_size": BATCH_SIZE,
                    "learning_rate_multiplier": LR_MULTIPLIER,
                }
            },
        },
    )
    done = wait_for_job(client, created.id, timeout_s=900)
    assert done.status == "succeeded", done.error
    return Trained(created, done, training_file, validation_file, tag)


@dataclass(frozen=True)
class Disposable:
    """A second job run to success, only so that tests have fine-tuned models to delete."""

    job: FineTuningJob

    @property
    def model(self) -> str:
        assert self.job.fine_tuned_model is not None
        return self.job.fine_tuned_model

    def checkpoint(self, epoch: int) -> str:
        return f"{self.model}:ckpt-step-{epoch * DISPOSABLE_STEPS_PER_EPOCH}"


@pytest.fixture(scope="module")
def disposable(client: OpenAI) -> Disposable:
    """Not tagged like `trained`'s jobs, so the listings that count those never see it."""
    created = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=_upload(client, "conformance-disposable.jsonl", DISPOSABLE_EXAMPLES, seed=2),
        suffix="disposable",
        seed=SEED,
        metadata={"suite": "conformance-disposable"},
        method={
            "type": "supervised",
            "supervised": {
                "hyperparameters": {"n_epochs": DISPOSABLE_EPOCHS, "batch_size": DISPOSABLE_BATCH_SIZE}
            },
        },
    )
    done = wait_for_job(client, created.id, timeout_s=900)
    assert done.status == "succeeded", done.error
    disposable = Disposable(done)
    listed = {m.id for m in client.models.list()}
    assert {disposable.model} | {disposable.checkpoint(e + 1) for e in range(DISPOSABLE_EPOCHS)} <= listed
    return disposable


@pytest.fixture(scope="module")
def cancelled(client: OpenAI, trained: Trained) -> FineTuningJob:
    """A job made with the legacy top-level `hyperparameters=` form, cancelled before it trains."""
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=trained.training_file,
        hyperparameters={"n_epochs": 1, "batch_size": 2, "learning_rate_multiplier": 2.5},
        metadata={"suite": "conformance", "tag": trained.tag},
    )
    assert job.status == "validating_files"
    assert job.method is not None and job.method.type == "supervised" and job.method.supervised
    assert job.method.supervised.hyperparameters.model_dump() == {
        "n_epochs": 1,
        "batch_size": 2,
        "learning_rate_multiplier": 2.5,
    }
    assert job.hyperparameters.n_epochs == 1 and job.hyperparameters.batch_size == 2
    done = client.fine_tuning.jobs.cancel(job.id)
    assert done.status == "cancelled"
    return done


@pytest.fixture(scope="module")
def failed(client: OpenAI, trained: Trained) -> FineTuningJob:
    """A job whose training file is too small: it fails during validation."""
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=_upload(client, "conformance-few.jsonl", 7),
        metadata={"suite": "conformance", "tag": trained.tag},
    )
    done = wait_for_job(client, job.id, timeout_s=120)
    assert done.status == "failed"
    return done


@pytest.fixture(scope="module")
def strict(server: Server) -> OpenAI:
    """A client that validates every response against the SDK's pydantic types."""
    return OpenAI(
        base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, _strict_response_validation=True
    )


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
        yield client


def _chat_messages() -> list[dict[str, str]]:
    return [{"role": "user", "content": "Classify: The order arrived late today."}]


# --- Files -------------------------------------------------------------------------------------------


def test_files_create_retrieve_content_delete(client: OpenAI) -> None:
    data = jsonl(training_examples(12))
    created = client.files.create(file=("conformance.jsonl", io.BytesIO(data)), purpose="fine-tune")
    assert created.id.startswith("file-") and created.object == "file"
    assert (created.bytes, created.filename, created.purpose) == (len(data), "conformance.jsonl", "fine-tune")
    assert created.status == "processed" and isinstance(created.created_at, int)
    assert created.expires_at is None
    assert client.files.wait_for_processing(created.id, poll_interval=0.1, max_wait_seconds=10) == created
    assert client.files.retrieve(created.id) == created
    assert client.files.content(created.id).read() == data

    deleted = client.files.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "file", True)
    with pytest.raises(openai.NotFoundError) as err:
        client.files.retrieve(created.id)
    assert err.value.status_code == 404 and err.value.type == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.files.content(created.id)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(created.id)


def test_files_create_with_expires_after(client: OpenAI) -> None:
    created = client.files.create(
        file=("expiring.jsonl", io.BytesIO(b"{}\n")),
        purpose="user_data",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert created.expires_at == created.created_at + 3600
    assert client.files.retrieve(created.id).expires_at == created.expires_at
    client.files.delete(created.id)


def test_files_list_purpose_order_after_limit(client: OpenAI) -> None:
    purpose = "user_data"
    mine = [
        client.files.create(file=(f"list-{i}.txt", io.BytesIO(b"x" * (i + 1))), purpose=purpose).id
        for i in range(3)
    ]
    try:
        newest_first = client.files.list(purpose=purpose).data
        assert set(mine) <= {f.id for f in newest_first}
        assert {f.purpose for f in newest_first} == {purpose}
        assert not set(mine) & {f.id for f in client.files.list(purpose="fine-tune")}
        times = [f.created_at for f in newest_first]
        assert times == sorted(times, reverse=True), "order defaults to desc (newest first)"
        ids = [f.id for f in newest_first]
        assert [f.id for f in client.files.list(purpose=purpose, order="asc").data] == ids[::-1]

        page = client.files.list(purpose=purpose, limit=1)
        assert [f.id for f in page.data] == ids[:1] and page.has_more is True
        page = client.files.list(purpose=purpose, limit=1, after=ids[0])
        assert [f.id for f in page.data] == ids[1:2]
        page = client.files.list(purpose=purpose, order="asc", limit=2, after=ids[-1])
        assert [f.id for f in page.data] == ids[-2:-4:-1]
        last = client.files.list(purpose=purpose, after=ids[-1])
        assert last.data == [] and last.has_more is False
        # The SDK pages on its own with `after=<last id>` while has_more.
        assert [f.id for f in client.files.list(purpose=purpose, limit=1)] == ids
    finally:
        for file_id in mine:
            client.files.delete(file_id)


def test_files_with_the_async_client(server: Server) -> None:
    async def scenario() -> None:
        async with AsyncOpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0) as aclient:
            data = jsonl(training_examples(10))
            created = await aclient.files.create(file=("async.jsonl", io.BytesIO(data)), purpose="fine-tune")
            assert created.status == "processed" and created.bytes == len(data)
            assert await aclient.files.retrieve(created.id) == created
            assert (await aclient.files.content(created.id)).read() == data
            listed = [f.id async for f in aclient.files.list(purpose="fine-tune", limit=2)]
            assert created.id in listed and len(listed) == len(set(listed))
            deleted = await aclient.files.delete(created.id)
            assert deleted.deleted is True and deleted.id == created.id
            with pytest.raises(openai.NotFoundError):
                await aclient.files.retrieve(created.id)

    asyncio.run(scenario())


# --- Fine-tuning jobs --------------------------------------------------------------------------------


def test_job_created_with_method_echoes_the_request(trained: Trained) -> None:
    job = trained.created
    assert job.id.startswith("ftjob-") and job.object == "fine_tuning.job"
    assert job.status == "validating_files" and job.model == BASE_MODEL
    assert job.organization_id == "org-default"
    assert (job.training_file, job.validation_file) == (trained.training_file, trained.validation_file)
    assert job.seed == SEED and job.user_provided_suffix == SUFFIX
    assert job.metadata == {"suite": "conformance", "tag": trained.tag}
    assert job.result_files == [] and job.fine_tuned_model is None
    assert job.finished_at is None and job.trained_tokens is None and job.error is None
    expected = {"n_epochs": N_EPOCHS, "batch_size": BATCH_SIZE, "learning_rate_multiplier": LR_MULTIPLIER}
    assert job.hyperparameters.model_dump() == expected
    assert job.method is not None and job.method.type == "supervised" and job.method.supervised
    assert job.method.supervised.hyperparameters.model_dump() == expected


def test_succeeded_job_final_shape(client: OpenAI, trained: Trained) -> None:
    job = trained.job
    assert FT_NAME.fullmatch(trained.model), trained.model
    assert job.finished_at is not None and job.finished_at >= job.created_at
    assert job.trained_tokens and job.trained_tokens > 0
    # step_metrics.csv, and (an opentune extension for jobs with a validation file) eval_report.json
    assert len(job.result_files) == 2 and job.error is None and job.estimated_finish is None
    assert job.hyperparameters.n_epochs == N_EPOCHS and job.hyperparameters.batch_size == BATCH_SIZE
    assert job.hyperparameters.learning_rate_multiplier == LR_MULTIPLIER
    assert client.fine_tuning.jobs.retrieve(job.id) == job


def test_result_file_is_a_metrics_csv(client: OpenAI, trained: Trained) -> None:
    result = client.files.retrieve(trained.job.result_files[0])
    assert result.purpose == "fine-tune-results" and result.status == "processed"
    rows = list(csv.DictReader(io.StringIO(client.files.content(result.id).text)))
    assert rows and list(rows[0]) == RESULT_COLUMNS
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))
    assert all(float(r["train_loss"]) > 0 and float(r["valid_loss"]) > 0 for r in rows)


def test_legacy_hyperparameters_job_is_cancelled(client: OpenAI, cancelled: FineTuningJob) -> None:
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert cancelled.fine_tuned_model is None and cancelled.error is None
    assert client.fine_tuning.jobs.retrieve(cancelled.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.cancel(cancelled.id)
    assert err.value.status_code == 400


@pytest.mark.parametrize("action", ["pause", "resume"])
@pytest.mark.parametrize("which", ["succeeded", "cancelled", "failed"])
def test_pause_and_resume_of_a_job_not_running_is_400_never_409(
    client: OpenAI, trained: Trained, cancelled: FineTuningJob, failed: FineTuningJob, which: str, action: str
) -> None:
    job = {"succeeded": trained.job, "cancelled": cancelled, "failed": failed}[which]
    call: Callable[[str], FineTuningJob] = getattr(client.fine_tuning.jobs, action)
    with pytest.raises(openai.APIStatusError) as err:
        call(job.id)
    # 409 would be an openai.ConflictError, which the SDK retries.
    assert isinstance(err.value, openai.BadRequestError), err.value
    assert err.value.status_code == 400 and err.value.type == "invalid_request_error"
    assert client.fine_tuning.jobs.retrieve(job.id).status == which


def test_unknown_job_is_404_everywhere(client: OpenAI) -> None:
    jobs = client.fine_tuning.jobs
    calls: list[Callable[[], object]] = [
        lambda: jobs.retrieve("ftjob-nope"),
        lambda: jobs.cancel("ftjob-nope"),
        lambda: jobs.pause("ftjob-nope"),
        lambda: jobs.resume("ftjob-nope"),
        lambda: jobs.list_events("ftjob-nope"),
        lambda: jobs.checkpoints.list("ftjob-nope"),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError):
            call()


def test_jobs_list_limit_after_and_metadata_filter(
    client: OpenAI, trained: Trained, cancelled: FineTuningJob, failed: FineTuningJob
) -> None:
    jobs = client.fine_tuning.jobs
    mine = jobs.list(metadata={"tag": trained.tag}, limit=100)
    assert {j.id for j in mine.data} == {trained.job.id, cancelled.id, failed.id}
    assert mine.has_more is False
    times = [j.created_at for j in mine.data]
    assert times == sorted(times, reverse=True), "jobs come newest first"
    both = jobs.list(metadata={"tag": trained.tag, "suite": "conformance"}, limit=100).data
    assert [j.id for j in both] == [j.id for j in mine.data]
    assert jobs.list(metadata={"tag": "no-such-tag"}).data == []
    assert jobs.list(metadata={"tag": trained.tag, "suite": "other"}).data == []

    ids = [j.id for j in mine.data]
    first = jobs.list(metadata={"tag": trained.tag}, limit=1)
    assert [j.id for j in first.data] == ids[:1] and first.has_more is True
    second = jobs.list(metadata={"tag": trained.tag}, limit=1, after=ids[0])
    assert [j.id for j in second.data] == ids[1:2]
    assert [j.id for j in jobs.list(metadata={"tag": trained.tag}, limit=1)] == ids  # auto-paging

    unfiltered = jobs.list(limit=2)
    assert len(unfiltered.data) == 2 and unfiltered.has_more is True
    after_first = jobs.list(limit=1, after=unfiltered.data[0].id).data
    assert [j.id for j in after_first] == [unfiltered.data[1].id]


def test_events_newest_first_and_paged(client: OpenAI, trained: Trained) -> None:
    job_id = trained.job.id
    events = client.fine_tuning.jobs.list_events(job_id, limit=1000)
    assert events.has_more is False
    for event in events.data:
        assert event.object == "fine_tuning.job.event" and event.id.startswith("ftevent-")
        assert event.level in ("info", "warn", "error") and event.type in ("message", "metrics")
        assert isinstance(event.message, str) and isinstance(event.data, dict)
    times = [e.created_at for e in events.data]
    assert times == sorted(times, reverse=True), "events come newest first"
    messages = [e.message for e in reversed(events.data)]
    assert messages[0] == f"Created fine-tuning job: {job_id}"
    assert messages[-1] == "The job has successfully completed"
    assert f"New fine-tuned model created: {trained.model}" in messages
    metrics = [e for e in events.data if e.type == "metrics"]
    assert metrics and all({"step", "train_loss", "total_steps"} <= set(e.data or {}) for e in metrics)
    assert metrics[0].data and metrics[0].data["step"] == STEPS and "valid_loss" in metrics[0].data

    ids = [e.id for e in events.data]
    assert [e.id for e in client.fine_tuning.jobs.list_events(job_id, limit=3)] == ids  # auto-paging
    page = client.fine_tuning.jobs.list_events(job_id, limit=2, after=ids[1])
    assert [e.id for e in page.data] == ids[2:4] and page.has_more is True
    assert client.fine_tuning.jobs.list_events(job_id, limit=1).has_more is True


def test_one_metrics_event_per_step(client: OpenAI, trained: Trained) -> None:
    """OpenAI logs one metrics event per step, with the latest losses of that step."""
    events = client.fine_tuning.jobs.list_events(trained.job.id, limit=1000).data
    steps = [e.data["step"] for e in reversed(events) if e.type == "metrics" and e.data]
    assert steps == list(range(1, STEPS + 1)), [e.message for e in reversed(events) if e.type == "metrics"]


def test_checkpoints_one_per_epoch_newest_first(client: OpenAI, trained: Trained) -> None:
    page = client.fine_tuning.jobs.checkpoints.list(trained.job.id)
    assert page.has_more is False
    steps = [c.step_number for c in page.data]
    assert steps == [STEPS, STEPS // N_EPOCHS]
    for checkpoint in page.data:
        assert checkpoint.object == "fine_tuning.job.checkpoint" and checkpoint.id.startswith("ftckpt_")
        assert checkpoint.fine_tuning_job_id == trained.job.id
        assert checkpoint.fine_tuned_model_checkpoint == trained.checkpoint(checkpoint.step_number)
        assert checkpoint.metrics.step == checkpoint.step_number
        assert checkpoint.metrics.train_loss and checkpoint.metrics.valid_loss
    ids = [c.id for c in page.data]
    assert [c.id for c in client.fine_tuning.jobs.checkpoints.list(trained.job.id, limit=1)] == ids
    after = client.fine_tuning.jobs.checkpoints.list(trained.job.id, limit=1, after=ids[0])
    assert [c.id for c in after.data] == ids[1:] and after.has_more is False


def test_jobs_with_the_async_client(server: Server, trained: Trained, cancelled: FineTuningJob) -> None:
    async def scenario() -> None:
        async with AsyncOpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0) as aclient:
            jobs = aclient.fine_tuning.jobs
            assert await jobs.retrieve(trained.job.id) == trained.job
            listed = [j.id async for j in jobs.list(metadata={"tag": trained.tag}, limit=1)]
            assert trained.job.id in listed and cancelled.id in listed
            events = [e.id async for e in jobs.list_events(trained.job.id, limit=5)]
            assert len(events) == len((await jobs.list_events(trained.job.id, limit=1000)).data)
            checkpoints = (await jobs.checkpoints.list(trained.job.id)).data
            assert [c.step_number for c in checkpoints] == [STEPS, STEPS // N_EPOCHS]

            job = await jobs.create(
                model=BASE_MODEL,
                training_file=trained.training_file,
                hyperparameters={"n_epochs": 1},
                metadata={"suite": "conformance-async"},
            )
            assert job.status == "validating_files"
            assert (await jobs.cancel(job.id)).status == "cancelled"
            with pytest.raises(openai.BadRequestError):
                await jobs.pause(job.id)
            with pytest.raises(openai.BadRequestError):
                await jobs.resume(job.id)

    asyncio.run(scenario())


# --- Models and chat ---------------------------------------------------------------------------------


def test_models_list_and_retrieve(client: OpenAI, trained: Trained) -> None:
    models = {m.id: m for m in client.models.list()}
    assert {BASE_MODEL, trained.model, trained.checkpoint(STEPS), trained.checkpoint(STEPS // 2)} <= set(
        models
    )
    for model in models.values():
        assert model.object == "model" and isinstance(model.created, int) and model.owned_by
    assert models[BASE_MODEL].owned_by == "system"
    fine_tuned = client.models.retrieve(trained.model)
    assert fine_tuned == models[trained.model] and fine_tuned.owned_by == "org-default"
    checkpoint = client.models.retrieve(trained.checkpoint(STEPS))
    assert checkpoint.id == trained.checkpoint(STEPS)
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("ft:tiny:default::nope1234")
    assert err.value.code == "model_not_found"


def test_deleting_the_base_model_is_403(client: OpenAI) -> None:
    with pytest.raises(openai.PermissionDeniedError) as err:
        client.models.delete(BASE_MODEL)
    assert err.value.status_code == 403 and err.value.type == "invalid_request_error"
    assert BASE_MODEL in [m.id for m in client.models.list()]


def test_chat_non_streamed_and_streamed(client: OpenAI, trained: Trained) -> None:
    kwargs: dict[str, Any] = {"model": trained.model, "messages": _chat_messages(), "temperature": 0}
    response = client.chat.completions.create(**kwargs, max_tokens=8)
    assert response.object == "chat.completion" and response.id and response.model == trained.model
    assert isinstance(response.created, int) and len(response.choices) == 1
    choice = response.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.finish_reason in ("stop", "length")
    usage = response.usage
    assert usage is not None and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    stream = client.chat.completions.create(
        **kwargs, max_tokens=8, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and len({c.id for c in chunks}) == 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == choice.message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == choice.finish_reason
    final = chunks[-1]
    assert final.choices == [] and final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )


def test_chat_with_a_checkpoint_model(client: OpenAI, trained: Trained) -> None:
    name = trained.checkpoint(STEPS // N_EPOCHS)
    response = client.chat.completions.create(model=name, messages=_chat_messages(), max_tokens=4)
    assert response.model == name and response.choices[0].message.role == "assistant"


def test_models_and_chat_with_the_async_client(server: Server, trained: Trained) -> None:
    async def scenario() -> None:
        async with AsyncOpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0) as aclient:
            assert trained.model in [m.id async for m in aclient.models.list()]
            assert (await aclient.models.retrieve(trained.model)).id == trained.model
            with pytest.raises(openai.PermissionDeniedError):
                await aclient.models.delete(BASE_MODEL)
            response = await aclient.chat.completions.create(
                model=trained.model, messages=_chat_messages(), max_completion_tokens=6, temperature=0
            )
            text = response.choices[0].message.content
            stream = await aclient.chat.completions.create(
                model=trained.model,
                messages=_chat_messages(),
                max_completion_tokens=6,
                temperature=0,
                stream=True,
            )
            streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            assert streamed == text

    asyncio.run(scenario())


# --- Strict response validation (the SDK's own types) --------------------------------------------------


def test_strict_client_files(strict: OpenAI, trained: Trained) -> None:
    created = strict.files.create(file=("strict.jsonl", io.BytesIO(b'{"a": 1}\n')), purpose="fine-tune")
    assert strict.files.retrieve(created.id) == created
    assert created.id in [f.id for f in strict.files.list(purpose="fine-tune", limit=3)]
    assert strict.files.list(purpose="batch_output").data == []
    assert strict.files.retrieve(trained.job.result_files[0]).purpose == "fine-tune-results"
    assert strict.files.content(created.id).read() == b'{"a": 1}\n'
    assert strict.files.delete(created.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        strict.files.retrieve(created.id)


def test_strict_client_jobs(
    strict: OpenAI, trained: Trained, cancelled: FineTuningJob, failed: FineTuningJob
) -> None:
    jobs = strict.fine_tuning.jobs
    assert jobs.retrieve(trained.job.id).status == "succeeded"
    assert jobs.retrieve(cancelled.id).status == "cancelled"
    failed_job = jobs.retrieve(failed.id)
    assert failed_job.error is not None and failed_job.error.code == "invalid_n_examples"
    # Only this module's jobs: another test's job may be `paused`, which the SDK's Literal lacks.
    assert len([j.id for j in jobs.list(metadata={"tag": trained.tag}, limit=2)]) == 3
    assert len(jobs.list_events(trained.job.id, limit=1000).data) > 10
    assert len(jobs.list_events(failed.id).data) >= 2
    assert len(jobs.checkpoints.list(trained.job.id).data) == N_EPOCHS
    assert jobs.checkpoints.list(cancelled.id).data == []

    job = jobs.create(
        model=BASE_MODEL,
        training_file=trained.training_file,
        method={"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 2}}},
        metadata={"suite": "conformance-strict"},
    )
    assert job.status == "validating_files"
    assert jobs.cancel(job.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        jobs.pause(job.id)


def test_strict_client_models_and_chat(strict: OpenAI, trained: Trained) -> None:
    assert trained.model in [m.id for m in strict.models.list()]
    assert strict.models.retrieve(trained.model).id == trained.model
    assert strict.models.retrieve(BASE_MODEL).id == BASE_MODEL
    response = strict.chat.completions.create(model=trained.model, messages=_chat_messages(), max_tokens=4)
    assert response.choices[0].message.role == "assistant"
    chunks = list(
        strict.chat.completions.create(
            model=BASE_MODEL,
            messages=_chat_messages(),
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None


# --- Raw bodies against OpenAI's schemas ---------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    http: httpx.Client
    trained: Trained
    cancelled: FineTuningJob
    disposable: Disposable


def _raw_file(raw: Raw) -> httpx.Response:
    return raw.http.post(
        "/v1/files", files={"file": ("raw.jsonl", b'{"a": 1}\n')}, data={"purpose": "fine-tune"}
    )


def _raw_deleted_file(raw: Raw) -> httpx.Response:
    return raw.http.delete(f"/v1/files/{_raw_file(raw).json()['id']}")


def _raw_job(raw: Raw, status: str) -> httpx.Response:
    """A new job, as `create` returns it (status validating_files) or once cancelled."""
    body = {
        "model": BASE_MODEL,
        "training_file": raw.trained.training_file,
        "suffix": "raw",
        "seed": 7,
        "metadata": {"suite": "conformance-raw"},
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
    }
    created = raw.http.post("/v1/fine_tuning/jobs", json=body)
    cancelled = raw.http.post(f"/v1/fine_tuning/jobs/{created.json()['id']}/cancel")
    return created if status == "validating_files" else cancelled


def _raw_chat(raw: Raw) -> httpx.Response:
    body = {"model": raw.trained.model, "messages": _chat_messages(), "max_tokens": 4, "temperature": 0}
    return raw.http.post("/v1/chat/completions", json=body)


def _jobs_path(raw: Raw, tail: str = "") -> str:
    return f"/v1/fine_tuning/jobs/{raw.trained.job.id}{tail}"


# name -> (expected status, OpenAI schema, request)
RAW_CASES: dict[str, tuple[int, str, Callable[[Raw], httpx.Response]]] = {
    "file-create": (200, "OpenAIFile", _raw_file),
    "file-retrieve": (200, "OpenAIFile", lambda r: r.http.get(f"/v1/files/{r.trained.training_file}")),
    "file-results": (200, "OpenAIFile", lambda r: r.http.get(f"/v1/files/{r.trained.job.result_files[0]}")),
    "file-list": (200, "ListFilesResponse", lambda r: r.http.get("/v1/files", params={"limit": 2})),
    "file-list-empty": (
        200,
        "ListFilesResponse",
        lambda r: r.http.get("/v1/files", params={"purpose": "assistants_output"}),
    ),
    "file-delete": (200, "DeleteFileResponse", _raw_deleted_file),
    "job-create": (200, "FineTuningJob", lambda r: _raw_job(r, "validating_files")),
    "job-cancel": (200, "FineTuningJob", lambda r: _raw_job(r, "cancelled")),
    "job-succeeded": (200, "FineTuningJob", lambda r: r.http.get(_jobs_path(r))),
    "job-list": (
        200,
        "ListPaginatedFineTuningJobsResponse",
        lambda r: r.http.get("/v1/fine_tuning/jobs", params={"metadata[tag]": r.trained.tag}),
    ),
    "event-list": (
        200,
        "ListFineTuningJobEventsResponse",
        lambda r: r.http.get(_jobs_path(r, "/events"), params={"limit": 1000}),
    ),
    "checkpoint-list": (
        200,
        "ListFineTuningJobCheckpointsResponse",
        lambda r: r.http.get(_jobs_path(r, "/checkpoints")),
    ),
    "model-list": (200, "ListModelsResponse", lambda r: r.http.get("/v1/models")),
    "model-base": (200, "Model", lambda r: r.http.get(f"/v1/models/{BASE_MODEL}")),
    "model-fine-tuned": (200, "Model", lambda r: r.http.get(f"/v1/models/{r.trained.model}")),
    "model-delete": (
        200,
        "DeleteModelResponse",
        lambda r: r.http.delete(f"/v1/models/{r.disposable.checkpoint(1)}"),
    ),
    "chat-completion": (200, "CreateChatCompletionResponse", _raw_chat),
    "error-401-no-key": (401, "ErrorResponse", lambda r: httpx.get(r.http.base_url.join("/v1/models"))),
    "error-401-wrong-key": (
        401,
        "ErrorResponse",
        lambda r: r.http.get("/v1/models", headers={"Authorization": "Bearer sk-wrong"}),
    ),
    "error-404-file": (404, "ErrorResponse", lambda r: r.http.get("/v1/files/file-nope")),
    "error-404-job": (404, "ErrorResponse", lambda r: r.http.get("/v1/fine_tuning/jobs/ftjob-nope")),
    "error-404-model": (404, "ErrorResponse", lambda r: r.http.get("/v1/models/ft:tiny:default::nope1234")),
    "error-404-route": (404, "ErrorResponse", lambda r: r.http.get("/v1/nowhere")),
    "error-405": (405, "ErrorResponse", lambda r: r.http.put("/v1/files")),
    "error-400-not-json": (
        400,
        "ErrorResponse",
        lambda r: r.http.post(
            "/v1/fine_tuning/jobs", content=b"{nope", headers={"content-type": "application/json"}
        ),
    ),
    "error-400-missing-field": (
        400,
        "ErrorResponse",
        lambda r: r.http.post("/v1/fine_tuning/jobs", json={"model": BASE_MODEL}),
    ),
    "error-400-query": (400, "ErrorResponse", lambda r: r.http.get("/v1/files", params={"limit": "many"})),
    "error-400-purpose": (
        400,
        "ErrorResponse",
        lambda r: r.http.post("/v1/files", files={"file": ("a", b"x")}, data={"purpose": "nope"}),
    ),
    "error-400-pause-cancelled": (
        400,
        "ErrorResponse",
        lambda r: r.http.post(f"/v1/fine_tuning/jobs/{r.cancelled.id}/pause"),
    ),
    "error-403-delete-base-model": (
        403,
        "ErrorResponse",
        lambda r: r.http.delete(f"/v1/models/{BASE_MODEL}"),
    ),
    "error-400-chat-no-model": (
        400,
        "ErrorResponse",
        lambda r: r.http.post("/v1/chat/completions", json={"messages": _chat_messages()}),
    ),
    "error-404-chat-model": (
        404,
        "ErrorResponse",
        lambda r: r.http.post("/v1/chat/completions", json={"model": "nope", "messages": _chat_messages()}),
    ),
}


@pytest.fixture(scope="module")
def raw(http: httpx.Client, trained: Trained, cancelled: FineTuningJob, disposable: Disposable) -> Raw:
    return Raw(http, trained, cancelled, disposable)


@pytest.mark.parametrize("case", list(RAW_CASES))
def test_raw_body_matches_openai_schema(raw: Raw, case: str) -> None:
    status, schema, request = RAW_CASES[case]
    response = request(raw)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("x-request-id")
    body = response.json()
    if status >= 400:
        assert set(body) == {"error"}, f"not OpenAI's error envelope (FastAPI's `detail`?): {body}"
    assert_schema(schema, body)


def test_raw_chat_stream_chunks_match_openai_schema(raw: Raw) -> None:
    body = {
        "model": raw.trained.model,
        "messages": _chat_messages(),
        "max_tokens": 4,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with raw.http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    for chunk in chunks:
        assert_schema("CreateChatCompletionStreamResponse", chunk)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


def test_known_deviations_from_openai_schema_are_exactly_these(http: httpx.Client, trained: Trained) -> None:
    """The unmodified schema rejects our bodies on the KNOWN_DEVIATIONS properties, and only there."""
    bodies = {
        "OpenAIFile": http.get(f"/v1/files/{trained.training_file}").json(),
        "ListFilesResponse": http.get("/v1/files", params={"purpose": "assistants_output"}).json(),
    }
    failing = set()
    for schema, body in bodies.items():
        for error in schema_errors(schema, body, with_deviations=False):
            path, _, message = error.partition(": ")
            assert message.startswith("None is not of type"), error
            failing.add((schema, path))
    assert failing == set(KNOWN_DEVIATIONS)


# --- Deleting fine-tuned models (the disposable job's: no other test uses them) ----------------------


def test_delete_a_checkpoint_and_the_fine_tuned_model(
    client: OpenAI, strict: OpenAI, disposable: Disposable
) -> None:
    checkpoint = disposable.checkpoint(2)
    deleted = strict.models.delete(checkpoint)
    assert (deleted.id, deleted.object, deleted.deleted) == (checkpoint, "model", True)
    assert checkpoint not in [m.id for m in client.models.list()]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(checkpoint)
    jobs = client.fine_tuning.jobs
    kept = [c.fine_tuned_model_checkpoint for c in jobs.checkpoints.list(disposable.job.id)]
    assert checkpoint not in kept
    assert disposable.checkpoint(DISPOSABLE_EPOCHS) in kept, "only the named checkpoint goes"

    model = disposable.model
    deleted = client.models.delete(model)
    assert (deleted.id, deleted.object, deleted.deleted) == (model, "model", True)
    assert model not in [m.id for m in client.models.list()]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(model)
    with pytest.raises(openai.NotFoundError):
        client.models.delete(model)
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model=model, messages=_chat_messages(), max_tokens=2)
    assert err.value.code == "model_not_found"
    # The job keeps its record of the model it made.
    assert jobs.retrieve(disposable.job.id).fine_tuned_model == model
