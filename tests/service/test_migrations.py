"""The migrations create exactly the schema the table classes describe."""

from pathlib import Path

from alembic import command
from alembic.config import Config

from service.store import Database
from service.store.database import MIGRATIONS


def test_migrations_match_the_tables(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        # Raises when a table class changed without a new migration (`alembic revision --autogenerate`).
        command.check(config)


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    db.migrate()
