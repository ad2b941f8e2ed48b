"""Grader tokens on SQLite and Postgres: minted for a job's trainer (only its digest stored), they act
as the job's organization while the job runs or pauses, stop when it ends or when a newer token
replaces them, are refused even by an open server once invalid, and reach chat completions only:
every other route is a 403 in OpenAI's shape, before the body is read."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from service.access import AuthenticationMiddleware
from service.auth import INVALID_GRADER_TOKEN, KeyRing, Principal
from service.config import Settings
from service.errors import AuthenticationFailed
from service.grader_tokens import GRADER_TOKEN_PREFIX, GraderTokens, TokenHolder
from service.jobs.executor import JobFolders
from service.jobs.grader_access import GraderAccess
from service.jobs.states import JobStatus
from service.jobs.store import JobStore
from service.store import Database, GraderTokenRow, JobRow
from tests.service.test_access import Body, ReadsWholeBody, Reply, http_scope
from trainer.rewards import grading_context
from trainer.spec import ReinforcementSettings, TrainingSpec

ORG = "org-acme"
LABEL_MODEL = {
    "type": "label_model",
    "name": "polite",
    "model": "tiny",
    "input": [{"role": "user", "content": "Polite? {{sample.output_text}}"}],
    "labels": ["yes", "no"],
    "passing_labels": ["yes"],
}
STRING_CHECK = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "operation": "eq",
}


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    database.migrate()
    return database


def _job(jobs: JobStore, job_id: str, status: JobStatus = JobStatus.RUNNING) -> None:
    jobs.insert(
        JobRow(
            id=job_id,
            organization_id=ORG,
            created_at=1,
            status=status.value,
            model="tiny",
            base_model="tiny",
            model_name=f"ft:tiny:acme::{job_id}",
            training_file="file-x",
            seed=1,
            method_type="reinforcement",
            requested_hyperparameters={},
            method_options={"grader": LABEL_MODEL},
            integrations=[],
            result_files=[],
        )
    )


def test_a_token_acts_for_its_job_until_the_job_ends(db: Database) -> None:
    jobs, tokens = JobStore(db), GraderTokens(db)
    _job(jobs, "ftjob-1")
    token = tokens.mint("ftjob-1")
    assert token.startswith(GRADER_TOKEN_PREFIX) and len(token) > 40
    assert tokens.holder(token) == TokenHolder("ftjob-1", ORG)
    assert tokens.holder(token + "x") is None and tokens.holder(GRADER_TOKEN_PREFIX) is None
    with db.session() as session:
        [stored] = session.scalars(select(GraderTokenRow)).all()
    assert token not in stored.token_hash and len(stored.token_hash) == 64  # its digest only
    # A pausing trainer grades until its checkpoint is saved.
    assert jobs.transition("ftjob-1", JobStatus.PAUSED)
    assert tokens.holder(token) is not None
    assert jobs.transition("ftjob-1", JobStatus.CANCELLED)
    assert tokens.holder(token) is None


@pytest.mark.parametrize("end", [JobStatus.SUCCEEDED, JobStatus.FAILED])
def test_a_token_stops_when_its_job_ends(db: Database, end: JobStatus) -> None:
    jobs, tokens = JobStore(db), GraderTokens(db)
    _job(jobs, "ftjob-1")
    token = tokens.mint("ftjob-1")
    assert jobs.transition("ftjob-1", end)
    assert tokens.holder(token) is None


def test_a_new_trainer_gets_a_new_token_and_the_old_one_stops(db: Database) -> None:
    jobs, tokens = JobStore(db), GraderTokens(db)
    _job(jobs, "ftjob-1")
    _job(jobs, "ftjob-2")
    first, other = tokens.mint("ftjob-1"), tokens.mint("ftjob-2")
    second = tokens.mint("ftjob-1")  # resumed, or retried after its trainer died
    assert tokens.holder(first) is None
    assert tokens.holder(second) == TokenHolder("ftjob-1", ORG)
    assert tokens.holder(other) == TokenHolder("ftjob-2", ORG)  # another job's is untouched


def test_a_queued_job_s_token_does_not_work_yet(db: Database) -> None:
    jobs, tokens = JobStore(db), GraderTokens(db)
    _job(jobs, "ftjob-1", JobStatus.QUEUED)
    token = tokens.mint("ftjob-1")  # minted just before the job is marked running
    assert tokens.holder(token) is None
    assert jobs.transition("ftjob-1", JobStatus.RUNNING)
    assert tokens.holder(token) == TokenHolder("ftjob-1", ORG)


def test_the_key_ring_takes_a_valid_token_and_refuses_an_ended_one_even_when_open(
    db: Database, tmp_path: Path
) -> None:
    jobs = JobStore(db)
    _job(jobs, "ftjob-1")
    open_ring = KeyRing(Settings(data_dir=tmp_path), db)  # no key anywhere: open
    assert open_ring.is_open()
    token = open_ring.grader_tokens.mint("ftjob-1")
    assert open_ring.authenticate(f"Bearer {token}") == Principal(ORG, grader_job_id="ftjob-1")
    assert jobs.transition("ftjob-1", JobStatus.SUCCEEDED)
    with pytest.raises(AuthenticationFailed) as refused:
        open_ring.authenticate(f"Bearer {token}")
    assert refused.value.code == INVALID_GRADER_TOKEN
    assert open_ring.authenticate("Bearer sk-anything") == Principal("org-default")  # as before


ROUTES = [
    ("GET", "/v1/files"),
    ("POST", "/v1/files"),
    ("GET", "/v1/fine_tuning/jobs"),
    ("POST", "/v1/fine_tuning/jobs"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/tiny"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/fine_tuning/alpha/graders/run"),
    ("GET", "/v1/chat/completions"),
    ("POST", "/v1/chat/completions/"),
]


@pytest.mark.anyio
async def test_a_token_reaches_chat_completions_and_nothing_else(db: Database, tmp_path: Path) -> None:
    jobs = JobStore(db)
    _job(jobs, "ftjob-1")
    ring = KeyRing(Settings(data_dir=tmp_path, api_key=SecretStr("sk-env")), db)
    token = ring.grader_tokens.mint("ftjob-1")
    headers = {"Authorization": f"Bearer {token}"}
    for method, path in ROUTES:
        route, body, reply = ReadsWholeBody(), Body(b"{}", 1), Reply()
        await AuthenticationMiddleware(route, lambda: ring)(http_scope(path, headers, method), body, reply)
        assert reply.status == 403, (method, path)
        assert reply.error["code"] == "insufficient_permissions" and body.handed_out == 0
    route, reply = ReadsWholeBody(), Reply()
    chat = http_scope("/v1/chat/completions", headers, "POST")
    await AuthenticationMiddleware(route, lambda: ring)(chat, Body(b"{}", 1), reply)
    assert reply.status == 200 and route.principal == Principal(ORG, grader_job_id="ftjob-1")
    assert not route.principal.may_call("GET", "/metrics")  # outside /v1: api/metrics.py asks too
    assert jobs.transition("ftjob-1", JobStatus.FAILED)
    reply = Reply()
    await AuthenticationMiddleware(ReadsWholeBody(), lambda: ring)(chat, Body(b"{}", 1), reply)
    assert reply.status == 401 and reply.error["code"] == INVALID_GRADER_TOKEN


def _spec(tmp_path: Path, grader: dict[str, object]) -> TrainingSpec:
    return TrainingSpec(
        job_id="ftjob-1",
        base_model="tiny",
        training_file=tmp_path / "train.jsonl",
        output_dir=tmp_path / "jobs" / "ftjob-1" / "output",
        method="reinforcement",
        n_epochs=1,
        batch_size=1,
        learning_rate=1e-4,
        reinforcement=ReinforcementSettings(grader=grader),
    )


def test_a_trainer_with_model_graders_gets_access_in_a_private_spec(db: Database, tmp_path: Path) -> None:
    _job(JobStore(db), "ftjob-1")
    settings = Settings(data_dir=tmp_path, host="0.0.0.0", port=8123, chat_max_concurrent_per_org=3)
    access = GraderAccess.from_settings(settings, db)
    multi = {"type": "multi", "name": "m", "calculate_output": "a", "graders": {"a": LABEL_MODEL}}
    spec = access.for_trainer(_spec(tmp_path, multi))
    assert spec.reinforcement is not None and spec.reinforcement.model_graders is not None
    given = spec.reinforcement.model_graders
    assert (given.gateway_url, given.max_concurrent) == ("http://127.0.0.1:8123", 3)
    assert GraderTokens(db).holder(given.token) == TokenHolder("ftjob-1", ORG)
    assert given.token not in repr(spec)  # never in a log line that prints the spec
    location = JobFolders(str(tmp_path / "jobs")).write_spec(spec)
    assert Path(location).stat().st_mode & 0o777 == 0o600
    assert TrainingSpec.read(location).reinforcement == spec.reinforcement
    without = access.for_trainer(_spec(tmp_path, STRING_CHECK))
    assert without.reinforcement is not None and without.reinforcement.model_graders is None


def test_the_trainer_s_gateway_address() -> None:
    assert Settings(host="127.0.0.1", port=9).resolved_trainer_gateway_url == "http://127.0.0.1:9"
    assert Settings(host="::", port=9).resolved_trainer_gateway_url == "http://[::1]:9"
    assert Settings(host="10.0.0.5", port=9).resolved_trainer_gateway_url == "http://10.0.0.5:9"
    lb = Settings(trainer_gateway_url="http://lb.internal:8000/")
    assert lb.resolved_trainer_gateway_url == "http://lb.internal:8000"


def test_a_trainer_with_a_cosine_grader_gets_the_embeddings_endpoint(db: Database, tmp_path: Path) -> None:
    cosine = {
        "type": "text_similarity",
        "name": "close",
        "input": "{{sample.output_text}}",
        "reference": "{{item.answer}}",
        "evaluation_metric": "cosine",
    }
    multi = {"type": "multi", "name": "m", "calculate_output": "a", "graders": {"a": cosine}}
    configured = Settings(
        data_dir=tmp_path,
        embeddings_url="http://embedder:8000/v1",
        embeddings_model="embed-small",
        embeddings_api_key="emb-secret",
    )
    spec = GraderAccess.from_settings(configured, db).for_trainer(_spec(tmp_path, multi))
    assert spec.reinforcement is not None and spec.reinforcement.embeddings is not None
    given = spec.reinforcement.embeddings
    assert (given.url, given.model, given.api_key) == ("http://embedder:8000/v1", "embed-small", "emb-secret")
    assert "emb-secret" not in repr(spec)
    assert spec.reinforcement.model_graders is None  # no model grader: no token
    assert grading_context(spec.reinforcement, []).embed is not None  # the trainer's side
    others = GraderAccess.from_settings(configured, db).for_trainer(_spec(tmp_path, STRING_CHECK))
    assert others.reinforcement is not None and others.reinforcement.embeddings is None
    unset = GraderAccess.from_settings(Settings(data_dir=tmp_path), db).for_trainer(_spec(tmp_path, multi))
    assert unset.reinforcement is not None and unset.reinforcement.embeddings is None
