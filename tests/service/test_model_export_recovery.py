"""Merged exports after a gateway stops, on SQLite and PostgreSQL (tests/service/export_world.py):
a gateway killed mid-export runs it again from scratch when it starts, or fails it after too many
attempts; another gateway takes over once a dead one's lease expires, never a live one's; a
gateway shutting down queues its export again without counting it. (The same against the real
server, killed with kill -9: tests/e2e/test_model_exports.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.exports.claims import ExportClaims
from tests.service.export_world import MERGED, ORG, World, process_of, until
from trainer.export_events import partial_zip

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    world = World(tmp_path, database_url)
    yield world
    for runner in world.runners:
        await runner.stop()


async def test_a_gateway_restarted_after_a_crash_runs_its_export_again(world: World) -> None:
    """The gateway died (kill -9) with the export running: its process died with it, its row is
    still `running` under its lease. Started again (same gateway id), it runs the export from
    scratch at once, into a new file, and removes what the interrupted attempt wrote."""
    model = world.model()
    export = world.exports.create(ORG, model, MERGED)
    crashed = ExportClaims(world.db, "gw-a", lease_s=30.0)
    assert crashed.claim(export.id, "file-interrupted")
    partial = partial_zip(world.files.location_of("file-interrupted"))
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"PK half")

    _, launcher = await world.start_runner("gw-a")
    process = await process_of(launcher, export.id)
    assert not partial.exists() and export.id in launcher.cleaned
    assert world.row(export.id).attempts == 2 and "file-interrupted" not in process.task.out
    process.succeed()
    await until(lambda: world.row(export.id).status == "succeeded")


async def test_an_export_interrupted_too_often_fails_clearly(world: World) -> None:
    model = world.model()
    export = world.exports.create(ORG, model, MERGED)
    assert ExportClaims(world.db, "gw-a", lease_s=30.0).claim(export.id, "file-third")
    world.set_row(export.id, attempts=3)
    _, launcher = await world.start_runner("gw-a", max_attempts=3)
    await until(lambda: world.row(export.id).status == "failed")
    error = world.exports.retrieve(ORG, model, export.id).error
    assert error is not None and error.code == "export_interrupted"
    assert error.message == (
        "The export was interrupted 3 times (the server stopped while it ran); "
        "create a new export to try again."
    )
    assert not launcher.processes


async def test_another_gateway_takes_over_once_the_lease_of_a_dead_one_expires(world: World) -> None:
    model = world.model()
    export = world.exports.create(ORG, model, MERGED)
    assert ExportClaims(world.db, "gw-dead", lease_s=0.5).claim(export.id, "file-dead")
    _, launcher = await world.start_runner("gw-b", lease_s=0.3)
    await asyncio.sleep(0.2)
    assert not launcher.processes and world.row(export.id).owner == "gw-dead", "not before the lease expires"
    process = await process_of(launcher, export.id)
    assert world.row(export.id).owner == "gw-b"
    process.succeed()
    await until(lambda: world.row(export.id).status == "succeeded")


async def test_a_running_export_keeps_its_lease_and_another_gateway_leaves_it_alone(world: World) -> None:
    export = world.exports.create(ORG, world.model(), MERGED)
    _, a = await world.start_runner("gw-a", lease_s=0.3)
    process = await process_of(a, export.id)
    _, b = await world.start_runner("gw-b", lease_s=0.3)
    await asyncio.sleep(1.0)  # three leases long
    assert not b.processes and not process.ended and world.row(export.id).owner == "gw-a"


async def test_a_gateway_shutting_down_queues_its_export_again_without_counting(world: World) -> None:
    export = world.exports.create(ORG, world.model(), MERGED)
    runner, launcher = await world.start_runner("gw-a")
    process = await process_of(launcher, export.id)
    process.write_partial()
    await runner.stop()
    world.runners.remove(runner)
    assert process.killed and not partial_zip(process.task.out).exists()
    row = world.row(export.id)
    assert (row.status, row.attempts, row.owner) == ("queued", 0, None)
    _, other = await world.start_runner("gw-b")
    await process_of(other, export.id)
    assert world.row(export.id).attempts == 1
