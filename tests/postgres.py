"""A throwaway PostgreSQL server for tests: initdb into a temporary folder, pg_ctl start on a free
port, one fresh database per test, everything removed at the end.

The server refuses to run as root, so under root it runs as the `postgres` user (Debian's server
binaries are on these machines: /usr/lib/postgresql/<version>/bin). Durability is off (fsync,
synchronous_commit): a test database never outlives its test run.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

USER = "opentune"


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]), None
    )
    if found is None:
        raise RuntimeError(f"PostgreSQL's `{name}` is not installed (Debian: apt install postgresql)")
    return found


def _run_as_server_user(args: list[str]) -> None:
    """Run a server command, as `postgres` when we are root (the server refuses root)."""
    if os.geteuid() == 0:
        args = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in args)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{done.stdout}\n{done.stderr}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self._names = itertools.count(1)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={USER} dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    root = Path(tempfile.mkdtemp(prefix="opentune-postgres-"))
    root.chmod(0o777)  # the server user writes its data folder and socket here
    data, port = root / "data", _free_port()
    _run_as_server_user([_binary("initdb"), "-D", str(data), "-A", "trust", "-U", USER, "--no-sync"])
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
    start = [_binary("pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-o", options, "start"]
    _run_as_server_user(start)
    try:
        yield PostgresServer(root, port)
    finally:
        _run_as_server_user([_binary("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)
