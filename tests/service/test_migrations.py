"""The migrations create exactly the schema the table classes describe."""

from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select

from service.store import ApiKeyRow, Database, FileRow
from service.store.database import MIGRATIONS


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def test_migrations_match_the_tables(database_url: str) -> None:
    db = Database(database_url)
    db.migrate()
    config = _config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        # Raises when a table class changed without a new migration (`alembic revision --autogenerate`).
        command.check(config)


def _schema(db: Database) -> dict[str, Any]:
    """Every table's columns, keys, indexes and constraints, as the database reports them."""
    inspector = inspect(db.engine)
    return {
        table: {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("default"), c.get("primary_key"))
                for c in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "foreign_keys": sorted(
                (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]))
                for fk in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)
            ),
            "unique": sorted(
                (u["name"] or "", tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)
            ),
        }
        for table in sorted(inspector.get_table_names())
    }


def _revisions(db: Database) -> tuple[str, ...]:
    with db.engine.connect() as connection:
        return tuple(sorted(MigrationContext.configure(connection).get_current_heads()))


def _rows(db: Database) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with db.session() as session:
        keys = [
            (r.id, r.organization_id, r.key_hash, r.hint, r.created_at, r.revoked_at)
            for r in session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id))
        ]
        files = [
            (r.id, r.organization_id, r.filename, r.purpose, r.bytes, r.status, r.expires_at)
            for r in session.scalars(select(FileRow).order_by(FileRow.id))
        ]
    return keys, files


def test_migrate_is_idempotent(database_url: str) -> None:
    url = database_url
    heads = tuple(sorted(ScriptDirectory.from_config(_config()).get_heads()))
    assert len(heads) == 1, f"the migrations branch: {heads}"

    db = Database(url)
    assert _revisions(db) == () and _schema(db) == {}
    db.migrate()
    assert _revisions(db) == heads
    schema = _schema(db)
    assert {"alembic_version", "api_keys", "files", "jobs", "checkpoints", "job_events"} <= set(schema)
    assert any(index[0] == "ix_api_keys_organization_id" for index in schema["api_keys"]["indexes"])

    with db.session() as session:
        session.add(
            ApiKeyRow(
                id="key-1", organization_id="org-acme", key_hash="ab" * 32, hint="sk-ot-abcd", created_at=1
            )
        )
        session.add(
            ApiKeyRow(
                id="key-2",
                organization_id="org-b",
                key_hash="cd" * 32,
                hint="sk-ot-cdef",
                created_at=2,
                revoked_at=3,
            )
        )
        session.add(
            FileRow(
                id="file-1",
                organization_id="org-acme",
                created_at=1,
                filename="train.jsonl",
                purpose="fine-tune",
                bytes=42,
                status="processed",
                expires_at=None,
            )
        )
    rows = _rows(db)
    assert len(rows[0]) == 2 and len(rows[1]) == 1

    db.migrate()  # again, on the same engine
    assert _revisions(db) == heads
    assert _schema(db) == schema
    assert _rows(db) == rows
    db.close()

    reopened = Database(url)  # as a restarted server does
    reopened.migrate()
    assert _revisions(reopened) == heads
    assert _schema(reopened) == schema
    assert _rows(reopened) == rows
    reopened.close()
