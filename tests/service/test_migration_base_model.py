"""Migration 0004 stores each job's and checkpoint's base model, computed from the names of rows
written before it (base names may hold ':' and '/'), and starts every job's retry count at 0."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from service.store import Database
from service.store.database import MIGRATIONS

BASES = ["tiny", "Qwen/Qwen2.5-0.5B-Instruct", "my:model"]


def _upgrade(db: Database, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def test_existing_rows_get_their_base_model(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    _upgrade(db, "0003")
    with db.engine.begin() as connection:
        for i, base in enumerate(BASES):
            name = f"ft:{base}:acme:{'sfx' if i else ''}:AbCd000{i}"
            connection.execute(
                text(
                    "INSERT INTO jobs (id, organization_id, created_at, status, model, training_file, seed,"
                    " method_type, requested_hyperparameters, integrations, model_name, result_files)"
                    " VALUES (:id, 'org-acme', 1, 'succeeded', :base, 'file-x', 0, 'supervised', '{}', '[]',"
                    " :name, '[]')"
                ),
                {"id": f"ftjob-{i}", "base": base, "name": name},
            )
            connection.execute(
                text(
                    "INSERT INTO checkpoints (id, job_id, organization_id, created_at, step_number, metrics,"
                    " fine_tuned_model_checkpoint, path)"
                    " VALUES (:id, :job, 'org-acme', 1, 120, '{}', :name, 'p')"
                ),
                {"id": f"ftckpt_{i}", "job": f"ftjob-{i}", "name": f"{name}:ckpt-step-120"},
            )
            connection.execute(
                text(
                    "INSERT INTO job_events (id, job_id, created_at, level, message, type, data)"
                    " VALUES (:id, :job, 1, 'info', 'created', 'message', '{}')"
                ),
                {"id": f"ftevent-{i}", "job": f"ftjob-{i}"},
            )

    _upgrade(db, "head")

    with db.engine.connect() as connection:
        jobs = connection.execute(text("SELECT base_model, trainer_retries FROM jobs ORDER BY id")).all()
        checkpoints = connection.execute(text("SELECT base_model FROM checkpoints ORDER BY id")).all()
        events = connection.execute(text("SELECT count(*) FROM job_events")).scalar()
    assert [tuple(row) for row in jobs] == [(base, 0) for base in BASES]
    # Nothing that hangs off a job was lost (a recreated `jobs` table would cascade to them on SQLite).
    assert [row[0] for row in checkpoints] == BASES and events == len(BASES)
