"""The store applies transitions atomically: the loser of a race changes nothing."""

from service.jobs.job_wire import to_wire
from service.jobs.states import JobStatus
from service.jobs.store import JobStore
from service.store import Database, JobRow


def _database(url: str) -> Database:
    db = Database(url)
    db.migrate()
    return db


def _job(store: JobStore, status: JobStatus = JobStatus.RUNNING) -> str:
    row = JobRow(
        id="ftjob-test",
        organization_id="org-a",
        created_at=1,
        status=status.value,
        model="base",
        base_model="base",
        model_name="ft:base:a::12345678",
        training_file="file-x",
        seed=7,
        method_type="supervised",
        requested_hyperparameters={"n_epochs": "auto", "batch_size": 2, "learning_rate_multiplier": "auto"},
        integrations=[],
        result_files=[],
    )
    store.insert(row)
    return row.id


def test_cancel_after_success_changes_nothing(database_url: str) -> None:
    store = JobStore(_database(database_url))
    job_id = _job(store)
    assert store.transition(job_id, JobStatus.SUCCEEDED, fine_tuned_model="ft:base:a::12345678")
    assert not store.transition(job_id, JobStatus.CANCELLED)
    job = store.get("org-a", job_id)
    assert job.status == "succeeded"
    assert job.finished_at is not None


def test_wire_form_keeps_auto_until_resolved(database_url: str) -> None:
    store = JobStore(_database(database_url))
    job_id = _job(store, JobStatus.QUEUED)
    wire = to_wire(store.get("org-a", job_id))
    assert wire.hyperparameters.n_epochs == "auto"
    assert wire.method.supervised is not None
    assert wire.method.supervised.hyperparameters.batch_size == 2
    store.transition(
        job_id,
        JobStatus.RUNNING,
        hyperparameters={"n_epochs": 3, "batch_size": 2, "learning_rate_multiplier": 1.0},
    )
    wire = to_wire(store.get("org-a", job_id))
    assert wire.hyperparameters.n_epochs == 3
    assert wire.error is None and wire.result_files == [] and wire.seed == 7
