"""Merged exports without processes, on SQLite and PostgreSQL: the real stores, catalog and export
runner, with export processes the test drives (tests/service/export_world.py). The state machine,
the file an export becomes, organizations, the caps, memory admission, a deleted model.
(Restarts and several gateways: test_model_export_recovery.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.errors import InvalidRequest, NotFound, QuotaExceeded
from tests.service.export_world import MERGED, ORG, OTHER, World, process_of, until
from trainer.export_events import partial_zip

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    world = World(tmp_path, database_url)
    yield world
    for runner in world.runners:
        await runner.stop()


async def test_an_export_runs_in_the_background_and_its_zip_becomes_a_file(world: World) -> None:
    model = world.model()
    created = world.exports.create(ORG, model, MERGED)
    assert (created.object, created.status, created.format, created.file_id) == (
        "model.export",
        "queued",
        "merged",
        None,
    )
    assert created.id.startswith("export-") and created.model == model

    _, launcher = await world.start_runner()
    process = await process_of(launcher, created.id)
    assert process.task.base_path == Path("tiny")
    assert process.task.adapter.endswith("adapter")
    running = world.exports.retrieve(ORG, model, created.id)
    assert running.status == "running" and running.file_id is None, "no file id before the file exists"

    process.succeed(b"PK merged weights")
    await until(lambda: world.row(created.id).status == "succeeded")
    done = world.exports.retrieve(ORG, model, created.id)
    assert done.file_id is not None and done.error is None and done.finished_at is not None
    file = world.files.retrieve(ORG, done.file_id)
    assert (file.purpose, file.bytes) == ("fine-tune-results", len(b"PK merged weights"))
    assert file.filename == model.replace(":", "-") + "-merged.zip"
    assert b"".join(world.files.read(world.files.get(ORG, done.file_id))) == b"PK merged weights"
    assert world.exports.list(ORG, model, 20, None).data == [done]
    await until(lambda: created.id in launcher.cleaned)  # its scratch folder

    # The model deleted: the finished export and its file stay (the file is the organization's).
    await world.catalog.delete(ORG, model)
    assert world.exports.retrieve(ORG, model, created.id) == done
    assert world.files.retrieve(ORG, done.file_id) == file


async def test_only_the_owners_fine_tuned_models_can_be_exported(world: World) -> None:
    model = world.model()
    export = world.exports.create(ORG, model, MERGED)
    with pytest.raises(NotFound) as refused:
        world.exports.create(OTHER, model, MERGED)
    assert refused.value.code == "model_not_found"
    with pytest.raises(NotFound):
        world.exports.retrieve(OTHER, model, export.id)
    with pytest.raises(NotFound):
        world.exports.list(OTHER, model, 20, None)
    with pytest.raises(NotFound):
        world.exports.retrieve(ORG, "ft:tiny:acme:other:AbCdEfGh", export.id)  # another model's id
    with pytest.raises(InvalidRequest) as base:
        world.exports.create(ORG, "tiny", MERGED)
    assert (base.value.code, base.value.param) == ("model_not_exportable", "model")
    with pytest.raises(NotFound):
        world.exports.create(ORG, "ft:tiny:acme:x:NotThere", MERGED)


async def test_exports_queued_or_running_are_capped_per_organization(
    tmp_path: Path, database_url: str
) -> None:
    world = World(tmp_path, database_url, max_unfinished=2)
    model = world.model()
    world.exports.create(ORG, model, MERGED)
    world.exports.create(ORG, model, MERGED)
    with pytest.raises(QuotaExceeded):
        world.exports.create(ORG, model, MERGED)
    world.exports.create(OTHER, world.model(OTHER), MERGED)  # another organization's cap is its own


async def test_at_most_max_concurrent_exports_run_and_the_next_starts_when_one_ends(world: World) -> None:
    model = world.model()
    ids = {world.exports.create(ORG, model, MERGED).id for _ in range(3)}
    _, launcher = await world.start_runner(max_concurrent=2)
    await until(lambda: len(launcher.processes) == 2)
    await asyncio.sleep(0.2)  # ten passes
    assert len(launcher.processes) == 2
    [waiting] = [export_id for export_id in ids if not launcher.of(export_id)]
    assert world.row(waiting).status == "queued"
    launcher.processes[0].succeed()
    third = await process_of(launcher, waiting)
    assert len(launcher.live) == 2 and not third.ended


async def test_an_export_waits_for_memory(world: World) -> None:
    world.memory_shortfall = "an export needs about 16.0 GiB of memory and 3.0 GiB is free"
    export = world.exports.create(ORG, world.model(), MERGED)
    _, launcher = await world.start_runner()
    await asyncio.sleep(0.2)
    assert not launcher.processes and world.row(export.id).status == "queued"
    world.memory_shortfall = None
    await process_of(launcher, export.id)


async def test_an_error_the_process_reports_fails_the_export_at_once(world: World) -> None:
    model = world.model()
    export = world.exports.create(ORG, model, MERGED)
    _, launcher = await world.start_runner()
    process = await process_of(launcher, export.id)
    process.write_partial()
    process.fail("merge_failed", "The adapter could not be merged into its base model (it does not fit it).")
    await until(lambda: world.row(export.id).status == "failed")
    failed = world.exports.retrieve(ORG, model, export.id)
    assert failed.error is not None and failed.error.code == "merge_failed" and failed.file_id is None
    assert len(launcher.processes) == 1
    assert not partial_zip(process.task.out).exists()
    assert world.files.list(ORG, None, 100, "desc", None).data == []


async def test_a_process_that_dies_is_run_again_from_scratch_then_fails(world: World) -> None:
    model = world.model()
    export = world.exports.create(ORG, model, MERGED)
    _, launcher = await world.start_runner(max_attempts=3)
    outputs = set()
    for attempt in (1, 2, 3):
        process = await process_of(launcher, export.id, attempt)
        assert world.row(export.id).attempts == attempt
        outputs.add(process.task.out)
        process.write_partial()
        process.crash(-9)
    await until(lambda: world.row(export.id).status == "failed")
    error = world.exports.retrieve(ORG, model, export.id).error
    assert error is not None and error.code == "export_failed"
    assert error.message.startswith("The export process stopped unexpectedly 3 times (last exit status -9)")
    assert len(outputs) == 3, "each attempt writes a file of its own"
    assert not any(partial_zip(out).exists() for out in outputs)


async def test_deleting_the_model_fails_its_running_export(world: World) -> None:
    model = world.model()
    export = world.exports.create(ORG, model, MERGED)
    _, launcher = await world.start_runner()
    process = await process_of(launcher, export.id)
    await world.catalog.delete(ORG, model)
    await until(lambda: world.row(export.id).status == "failed")
    assert process.killed
    failed = world.exports.retrieve(ORG, model, export.id)
    assert failed.error is not None and failed.error.code == "model_deleted"
    assert failed.error.message == f"The model {model} was deleted before its export finished."
    assert world.exports.list(ORG, model, 20, None).data == [failed], "its exports stay listed"
    with pytest.raises(NotFound):
        world.exports.create(ORG, model, MERGED)


async def test_a_queued_export_of_a_deleted_model_fails_without_starting(world: World) -> None:
    model = world.model()
    export = world.exports.create(ORG, model, MERGED)
    await world.catalog.delete(ORG, model)
    _, launcher = await world.start_runner()
    await until(lambda: world.row(export.id).status == "failed")
    assert not launcher.processes and world.row(export.id).error == {
        "code": "model_deleted",
        "message": f"The model {model} was deleted before its export finished.",
    }
