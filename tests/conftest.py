from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import PostgresServer, postgres_server
from tests.s3_server import S3Server
from tests.s3_server import s3_server as s3_server_at
from tests.tiny_model import build_tiny_model
from trainer import storage


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-init chat model folder, built offline once per test session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (`pytest.mark.anyio`) run on asyncio, as the gateway does."""
    return "asyncio"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the test session (tests/postgres.py), started on first use."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3 server (`rclone serve s3`, tests/s3_server.py) for the test session, on first use."""
    with s3_server_at(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """This process's boto3 (trainer/storage.py) pointed at the test S3 server."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    storage._s3.cache_clear()  # its client was made with the environment of its first use
    yield s3_server
    storage._s3.cache_clear()


@pytest.fixture(params=["folder", "s3"])
def storage_root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh storage root (trainer/storage.py) of each kind the service supports: a local folder,
    or a prefix in the test S3 server's bucket."""
    if request.param == "folder":
        return str(tmp_path / "storage")
    server: S3Server = request.getfixturevalue("s3_env")
    return server.storage_url(tmp_path.name)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend the service supports: tests of the database layer
    take this and run on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()
