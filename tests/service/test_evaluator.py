"""A finished job's evaluation through Outcomes (service/jobs/evaluator.py): real stores, the real
adapter registry, and a fake engine (tests/service/fake_engine.py) that also answers chats."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from service.config import Settings
from service.engine.adapters import AdapterRegistry
from service.engine.limits import ChatLimits
from service.files import FileStore
from service.ids import new_id
from service.jobs.checkpoints import CheckpointStore
from service.jobs.evaluator import JobEvaluator
from service.jobs.outcomes import Outcomes, Succeed
from service.jobs.progress import ProgressRecorder
from service.jobs.states import JobStatus
from service.jobs.store import JobStore
from service.store import Database, JobRow
from tests.service.fake_engine import FakeEngine, fake_fleet
from trainer.events import BaseValidationEvent, MetricsEvent, ResultEvent
from trainer.graders import GradingContext

pytestmark = pytest.mark.anyio
ORG = "org-acme"
MODEL = "ft:tiny:acme::abcd1234"
RIGHT = '{"label": "neutral"}'
SAME = {"type": "string_check", "name": "same", "operation": "eq"}
SAME |= {"input": "{{sample.output_text}}", "reference": "{{item.reference_answer}}"}

Reply = Callable[[dict[str, Any]], tuple[int, str]]


@dataclass
class FakeAnswer:
    status_code: int
    body: bytes

    async def read(self) -> bytes:
        return self.body

    def close(self) -> None:
        pass


@dataclass
class ChattingEngine(FakeEngine):
    """Answers chat completions with `reply(body)`: (status, text), after `delay_s`."""

    reply: Reply = lambda body: (200, RIGHT if body["model"] == MODEL else "garbage garbage")
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    registry: AdapterRegistry | None = None
    kept_while_answering: list[bool] = field(default_factory=list)

    async def send(self, path: str, body: dict[str, Any]) -> FakeAnswer:
        assert path == "/v1/chat/completions"
        self.requests.append(body)
        if body["model"] == MODEL and self.registry is not None and not self.kept_while_answering:
            # Another adapter loaded meanwhile (the cap is 1) does not evict the one being used.
            await self.registry.ensure_loaded("ft:tiny:acme::other", "/elsewhere")
            self.kept_while_answering.append(MODEL in self.registry.resident)
        await asyncio.sleep(self.delay_s)
        status, text = self.reply(body)
        return FakeAnswer(status, json.dumps({"choices": [{"message": {"content": text}}]}).encode())


class World:
    def __init__(self, tmp_path: Path, database_url: str, engine: ChattingEngine, **settings: Any) -> None:
        self.tmp_path = tmp_path
        self.db = Database(database_url)
        self.db.migrate()
        self.jobs = JobStore(self.db)
        self.files = FileStore(self.db, str(tmp_path / "files"))
        self.engine = engine
        self.fleet = fake_fleet(engine, "tiny", max_adapters=1)
        engine.registry = self.fleet.get("tiny").replicas[0].adapters
        config = Settings(data_dir=tmp_path, **settings)
        evaluator = JobEvaluator(config, self.jobs, self.files, self.fleet, ChatLimits(None), self.grading)
        self.outcomes = Outcomes(self.jobs, self.files, self.fleet, "gw", evaluator)
        self.progress = ProgressRecorder(self.jobs, CheckpointStore(self.db))

    @staticmethod
    def grading(org_id: str) -> GradingContext:
        return GradingContext()  # no model caller, no sandbox: string checks only

    def job(self, rows: list[dict[str, Any]] | None, method: str = "supervised", **fields: Any) -> JobRow:
        upload = io.BytesIO("".join(json.dumps(r) + "\n" for r in rows or []).encode())
        validation = self.files.create(ORG, upload, "valid.jsonl", "fine-tune").id if rows else None
        row = JobRow(
            id=new_id("ftjob"),
            organization_id=ORG,
            created_at=int(time.time()),
            status=JobStatus.RUNNING.value,
            owner="gw",
            model="tiny",
            base_model="tiny",
            model_name=MODEL,
            training_file=validation or "file-x",
            validation_file=validation,
            seed=0,
            method_type=method,
            requested_hyperparameters={},
            integrations=[],
            result_files=[],
            **fields,
        )
        self.jobs.insert(row)
        return self.jobs.get(None, row.id)

    async def finish(self, job: JobRow) -> JobRow:
        (self.tmp_path / "metrics.csv").write_text("step,train_loss\n1,2.0\n")
        adapter = str(self.tmp_path / "adapter")
        result = ResultEvent(
            adapter_dir=adapter, metrics_csv=str(self.tmp_path / "metrics.csv"), trained_tokens=9
        )
        await self.outcomes.apply(job, Succeed(result))
        return self.jobs.get(None, job.id)

    def messages(self, job_id: str) -> list[tuple[str, str]]:
        events = reversed(self.jobs.list_events(ORG, job_id, None, 100).data)
        return [(e.message, e.level) for e in events]

    def report(self, job: JobRow) -> dict[str, Any]:
        assert len(job.result_files) == 2
        stored = self.files.get(ORG, job.result_files[1])
        assert (stored.filename, stored.purpose) == ("eval_report.json", "fine-tune-results")
        return dict(json.loads(b"".join(self.files.read(stored))))


def chat_rows(references: list[str]) -> list[dict[str, Any]]:
    return [
        {"messages": [{"role": "user", "content": f"Classify: {i}"}, {"role": "assistant", "content": r}]}
        for i, r in enumerate(references)
    ]


async def test_a_job_with_a_validation_file_succeeds_with_its_report(
    tmp_path: Path, database_url: str
) -> None:
    world = World(tmp_path, database_url, ChattingEngine(), eval_max_prompts=4)
    metadata = {"opentune.eval_grader": json.dumps(SAME)}
    job = world.job(chat_rows([RIGHT, RIGHT, "other", RIGHT, RIGHT, RIGHT]), job_metadata=metadata)
    world.progress.record(job, BaseValidationEvent(valid_loss=6.9, valid_mean_token_accuracy=0.0), 0.0)
    for step, loss in ((1, 2.0), (2, 0.5)):
        event = MetricsEvent(step=step, total_steps=2, train_loss=1.0, valid_loss=loss)
        world.progress.record(job, event, time.monotonic())

    done = await world.finish(job)
    assert done.status == "succeeded"
    report = world.report(done)
    assert report["n_prompts"] == 4 and report["n_skipped"] == 0 and report["grader"] == "same"
    assert report["grader_errors"] == 0
    assert report["base"] == {"model": "tiny", "valid_loss": 6.9, "exact_match": 0.0, "grader_mean": 0.0}
    assert report["fine_tuned"] == {
        "model": MODEL,
        "valid_loss": 0.5,
        "exact_match": 0.75,
        "grader_mean": 0.75,
    }
    assert [e["fine_tuned"] for e in report["examples"]] == [RIGHT] * 4
    messages = [m for m, _ in world.messages(job.id)]
    assert messages[-3:] == [
        "Evaluation: base exact match 0.00, validation loss 6.9000, grader mean 0.000 vs fine-tuned "
        "exact match 0.75, validation loss 0.5000, grader mean 0.750 (4 validation prompts; details in "
        "eval_report.json)",
        f"New fine-tuned model created: {MODEL}",
        "The job has successfully completed",
    ]
    # Greedy, the same budget for both models, in the organization's own prefix cache.
    assert len(world.engine.requests) == 8
    for request in world.engine.requests:
        assert request["temperature"] == 0 and request["max_tokens"] == len(request_reference(request)) + 8
        assert len(request["cache_salt"]) == 64
    assert world.engine.kept_while_answering == [True]
    assert world.fleet.get("tiny").replicas[0].in_flight == 0


def request_reference(request: dict[str, Any]) -> str:
    return "other" if request["messages"][0]["content"] == "Classify: 2" else RIGHT


@pytest.fixture
def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


async def test_an_evaluation_past_its_deadline_is_a_warning(tmp_path: Path, sqlite: str) -> None:
    world = World(tmp_path, sqlite, ChattingEngine(delay_s=30), eval_timeout_s=0.3)
    started = time.monotonic()
    done = await world.finish(world.job(chat_rows([RIGHT] * 3)))
    assert time.monotonic() - started < 5
    assert done.status == "succeeded" and len(done.result_files) == 1
    assert (
        "Evaluation skipped: it did not finish within 0.3 s. The fine-tuned model is not affected.",
        "warn",
    ) in world.messages(done.id)
    replica = world.fleet.get("tiny").replicas[0]
    assert replica.in_flight == 0
    await replica.adapters.ensure_loaded("ft:tiny:acme::third", "/x")
    assert MODEL not in replica.adapters.resident, "released when the evaluation was given up"


@pytest.mark.parametrize(
    ("reply", "warning"),
    [
        (lambda body: (500, ""), "the engine answered with status 500"),
        (lambda body: (400, "too long"), "the engine refused every prompt"),
    ],
    ids=["engine-error", "all-refused"],
)
async def test_engine_trouble_is_a_warning(tmp_path: Path, sqlite: str, reply: Reply, warning: str) -> None:
    world = World(tmp_path, sqlite, ChattingEngine(reply=reply))
    done = await world.finish(world.job(chat_rows([RIGHT] * 3)))
    assert done.status == "succeeded" and len(done.result_files) == 1
    expected = f"Evaluation skipped: {warning}. The fine-tuned model is not affected."
    assert (expected, "warn") in world.messages(done.id)


async def test_prompts_the_engine_refuses_are_left_out_of_both_sides(tmp_path: Path, sqlite: str) -> None:
    def reply(body: dict[str, Any]) -> tuple[int, str]:
        if body["messages"][0]["content"] == "Classify: 0":
            return 400, "too long for the engine"
        return 200, RIGHT if body["model"] == MODEL else "no"

    world = World(tmp_path, sqlite, ChattingEngine(reply=reply))
    report = world.report(await world.finish(world.job(chat_rows([RIGHT] * 3))))
    assert (report["n_prompts"], report["n_skipped"]) == (2, 1)
    assert report["base"]["valid_loss"] is None, "no base_validation event was recorded"
    assert (report["base"]["exact_match"], report["fine_tuned"]["exact_match"]) == (0.0, 1.0)


async def test_a_reinforcement_job_reports_its_grader_means(tmp_path: Path, sqlite: str) -> None:
    grader = {"type": "string_check", "name": "label", "operation": "eq"}
    grader |= {"input": "{{sample.output_text}}", "reference": "{{item.label}}"}
    rows: list[dict[str, Any]] = [{"messages": [{"role": "user", "content": f"q{i}"}]} for i in range(4)]
    for row in rows[:3]:
        row["label"] = RIGHT  # the last row has none: grading its answers fails
    world = World(tmp_path, sqlite, ChattingEngine(), eval_max_tokens=32)
    job = world.job(rows, method="reinforcement", method_options={"grader": grader})
    report = world.report(await world.finish(job))
    assert report["grader"] == "label" and report["max_tokens"] == 32  # under the trained 64
    assert report["base"] == {"model": "tiny", "valid_loss": None, "exact_match": None, "grader_mean": 0.0}
    assert report["fine_tuned"]["grader_mean"] == 0.75 and report["fine_tuned"]["exact_match"] is None
    assert report["grader_errors"] == 2, "the last row's two answers, scored 0"
    assert {r["max_tokens"] for r in world.engine.requests} == {32}


async def test_reinforcement_answers_are_as_long_as_trained_ones(tmp_path: Path, sqlite: str) -> None:
    grader = {"type": "string_check", "name": "label", "operation": "eq"}
    grader |= {"input": "{{sample.output_text}}", "reference": "{{item.label}}"}
    rows = [{"messages": [{"role": "user", "content": "q"}], "label": RIGHT}]
    world = World(tmp_path, sqlite, ChattingEngine())  # eval_max_tokens: 256
    metadata = {"opentune.max_completion_tokens": "8"}
    job = world.job(rows, method="reinforcement", method_options={"grader": grader}, job_metadata=metadata)
    assert world.report(await world.finish(job))["max_tokens"] == 8
    assert {r["max_tokens"] for r in world.engine.requests} == {8}


async def test_no_validation_file_no_evaluation(tmp_path: Path, sqlite: str) -> None:
    world = World(tmp_path, sqlite, ChattingEngine())
    done = await world.finish(world.job(None))
    assert done.status == "succeeded" and len(done.result_files) == 1
    assert world.engine.requests == [] and not any(
        m.startswith("Evaluation") for m, _ in world.messages(done.id)
    )


async def test_a_deleted_validation_file_is_a_warning(tmp_path: Path, sqlite: str) -> None:
    world = World(tmp_path, sqlite, ChattingEngine())
    job = world.job(chat_rows([RIGHT] * 3))
    assert job.validation_file is not None
    world.files.delete(ORG, job.validation_file)
    done = await world.finish(job)
    assert done.status == "succeeded" and len(done.result_files) == 1
    expected = "Evaluation skipped: the validation file is gone. The fine-tuned model is not affected."
    assert (expected, "warn") in world.messages(done.id)
