"""Adapter downloads (service/weights/): the zip is streamed member by member from storage (data
descriptors, nothing built whole), holds what peft and vLLM load at its top level (the config naming
the base by its public name), the tokenizer and a model card saying where the adapter came from;
only the owning organization downloads, a base model is a 400."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.catalog import ModelCatalog
from service.engine.adapters import AdapterRegistry
from service.engine.fleet import EngineFleet
from service.errors import InvalidRequest, NotFound, PermissionDenied
from service.jobs.checkpoints import CheckpointStore
from service.jobs.model_records import JobModelRecords
from service.jobs.permissions import CheckpointPermissions
from service.jobs.states import JobStatus
from service.jobs.store import JobStore
from service.store import ApiKeyRow, Database, ImportedModelRow, JobRow
from service.weights.archive import ArchiveMember, stream_zip
from service.weights.download import AdapterDownloads, archive_filename
from service.weights.imports import ImportedModels
from service.weights.layout import base_reference
from service.weights.records import CombinedRecords
from tests.service.adapter_files import CHAT_TEMPLATE, adapter_files, write_base
from tests.service.fake_engine import FakeEngine, one_replica

OWNER, FRIEND, STRANGER = "org-acme", "org-globex", "org-initech"
MODEL = "ft:tiny:acme:bot:AbC123xy"
CHECKPOINT = f"{MODEL}:ckpt-step-4"
IMPORTED = "ft:tiny:acme:mine:ImP0rted"


def test_members_are_read_one_chunk_at_a_time_into_an_unseekable_zip() -> None:
    opened: list[str] = []

    def chunks(name: str, parts: list[bytes]) -> Iterator[bytes]:
        opened.append(name)
        yield from parts

    weights = [bytes([n]) * 300_000 for n in range(4)]
    members = [
        ArchiveMember("a.json", lambda: chunks("a.json", [b'{"r": 8}'])),
        ArchiveMember("w.safetensors", lambda: chunks("w", weights), compress=False),
    ]
    stream = stream_zip(members, modified=1_700_000_000)
    first = next(stream)
    assert opened == ["a.json"]  # the next member is not opened before its turn
    rest = list(stream)
    assert opened == ["a.json", "w"]
    assert max(len(c) for c in rest) < 400_000  # about a chunk at a time, never the whole archive
    archive = zipfile.ZipFile(io.BytesIO(first + b"".join(rest)))
    assert archive.testzip() is None
    assert archive.read("w.safetensors") == b"".join(weights)
    info = archive.getinfo("w.safetensors")
    assert info.flag_bits & 0x08 and info.compress_type == zipfile.ZIP_STORED  # a data descriptor
    assert info.date_time == (2023, 11, 14, 22, 13, 20)
    again = b"".join(stream_zip(members, modified=1_700_000_000))
    assert again == first + b"".join(rest)  # the same model gives the same bytes


def test_archive_names_are_safe_in_a_header() -> None:
    assert archive_filename(MODEL) == "ft-tiny-acme-bot-AbC123xy.zip"
    assert archive_filename('ft:Qwen/Qwen2.5:a:"x\r\n;:id') == "ft-Qwen-Qwen2.5-a-x-id.zip"


def test_the_base_is_named_by_its_hub_id_never_a_server_path(tmp_path: Path) -> None:
    assert base_reference("qwen", "Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert base_reference("tiny", str(tmp_path)) == "tiny"
    assert base_reference("local", "/models/llama") == "local"


def _write(folder: Path, files: dict[str, bytes]) -> str:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return str(folder)


@pytest.fixture
def downloads(tmp_path: Path) -> tuple[AdapterDownloads, Database]:
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    with db.session() as session:
        session.add(ApiKeyRow(id="key-1", organization_id=FRIEND, key_hash="1" * 64, hint="sk", created_at=1))
    jobs, checkpoints = JobStore(db), CheckpointStore(db)
    trained = _write(tmp_path / "jobs" / "adapter", adapter_files())
    without_tokenizer = {k: v for k, v in adapter_files().items() if k.startswith("adapter_")}
    checkpoint = _write(tmp_path / "jobs" / "checkpoint-4", {**without_tokenizer, "optimizer.pt": b"\x80"})
    job = JobRow(
        id="ftjob-1",
        organization_id=OWNER,
        created_at=1,
        status=JobStatus.RUNNING.value,
        model="tiny",
        base_model="tiny",
        model_name=MODEL,
        training_file="file-x",
        seed=1,
        method_type="supervised",
        requested_hyperparameters={"n_epochs": "auto"},
        hyperparameters={"n_epochs": 2, "batch_size": 5, "learning_rate_multiplier": 1.0},
        integrations=[],
        result_files=[],
    )
    jobs.insert(job)
    jobs.add_event(job.id, "Step 4/4", type_="metrics", data={"step": 4, "train_loss": 0.123456789})
    checkpoints.add(job, 4, CHECKPOINT, checkpoint, {"step": 4, "train_loss": 0.5})
    jobs.transition(
        job.id, JobStatus.SUCCEEDED, fine_tuned_model=MODEL, adapter_path=trained, trained_tokens=999
    )
    imports = ImportedModels(db, str(tmp_path / "imports"))
    imports.add(
        ImportedModelRow(
            id="ftimport-1",
            organization_id=OWNER,
            created_at=1_700_000_000,
            model_name=IMPORTED,
            base_model="tiny",
            suffix="mine",
            filename="my-peft.zip",
            bytes=1,
            path=_write(tmp_path / "imports" / "ftimport-1", adapter_files()),
        )
    )
    engine = FakeEngine()
    base = write_base(tmp_path / "base")
    fleet = EngineFleet([one_replica("tiny", base, engine.client, AdapterRegistry(engine.client, 4))])
    records = CombinedRecords([JobModelRecords(jobs, checkpoints), imports])
    catalog = ModelCatalog(records, fleet, started_at=0)
    references = {"tiny": "org/tiny-base"}
    return AdapterDownloads(catalog, jobs, checkpoints, imports, fleet, references), db


def _unzip(downloads: AdapterDownloads, org: str, model: str) -> tuple[str, zipfile.ZipFile]:
    archive = downloads.archive(org, model)
    return archive.filename, zipfile.ZipFile(io.BytesIO(b"".join(archive.chunks)))


def test_a_fine_tuned_models_zip_loads_as_is_and_says_how_it_was_trained(
    downloads: tuple[AdapterDownloads, Database],
) -> None:
    filename, archive = _unzip(downloads[0], OWNER, MODEL)
    assert filename == "ft-tiny-acme-bot-AbC123xy.zip"
    assert sorted(archive.namelist()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "chat_template.jinja",
        "tokenizer_config.json",
    ]
    config = json.loads(archive.read("adapter_config.json"))
    assert config["base_model_name_or_path"] == "org/tiny-base" and config["r"] == 8
    assert archive.read("adapter_model.safetensors") == adapter_files()["adapter_model.safetensors"]
    card = archive.read("README.md").decode()
    assert card.startswith('---\nbase_model: "org/tiny-base"\nlibrary_name: peft\n')
    for fact in (
        f"# {MODEL}",
        "job `ftjob-1`",
        "| method | supervised |",
        "n_epochs=2, batch_size=5, learning_rate_multiplier=1",
        "| trained tokens | 999 |",
        "| final metrics (step 4) | train_loss=0.123457 |",
        "LoRA r=8, alpha=16, dropout=0.05, target modules: q_proj, v_proj",
        "served by opentune as `tiny`",
    ):
        assert fact in card, fact


def test_a_checkpoint_without_a_tokenizer_gets_the_bases_and_none_of_its_training_state(
    downloads: tuple[AdapterDownloads, Database],
) -> None:
    _, archive = _unzip(downloads[0], OWNER, CHECKPOINT)
    names = set(archive.namelist())
    assert "optimizer.pt" not in names and {"adapter_model.safetensors", "tokenizer_config.json"} <= names
    assert archive.read("chat_template.jinja").decode() == CHAT_TEMPLATE  # the base's
    card = archive.read("README.md").decode()
    assert "checkpoint of opentune fine-tuning job `ftjob-1`, saved at step 4" in card
    assert "| final metrics (step 4) | train_loss=0.5 |" in card


def test_an_imported_models_card_says_it_was_imported(downloads: tuple[AdapterDownloads, Database]) -> None:
    _, archive = _unzip(downloads[0], OWNER, IMPORTED)
    card = archive.read("README.md").decode()
    assert "Imported into opentune from `my-peft.zip` on 2023-11-14 22:13:20 UTC" in card
    assert "peft's own card" not in card


def test_only_the_owner_downloads(downloads: tuple[AdapterDownloads, Database]) -> None:
    service, db = downloads
    CheckpointPermissions(db, service.catalog.owns, "org-default").create(OWNER, MODEL, [FRIEND])
    refusals: list[tuple[str, str, type[Exception], str]] = [
        (FRIEND, MODEL, PermissionDenied, "only the organization that owns it"),
        (STRANGER, MODEL, NotFound, "does not exist or you do not have access"),
        (STRANGER, IMPORTED, NotFound, "does not exist"),
        (OWNER, "tiny", InvalidRequest, "is a base model"),
        (OWNER, "ft:tiny:acme::nothing", NotFound, "does not exist"),
    ]
    for org, model, error, message in refusals:
        with pytest.raises(error, match=message):
            service.archive(org, model)
    assert _unzip(service, OWNER, MODEL)[1].testzip() is None


def test_an_adapter_gone_from_storage_is_a_404(
    downloads: tuple[AdapterDownloads, Database], tmp_path: Path
) -> None:
    (tmp_path / "jobs" / "adapter" / "adapter_model.safetensors").unlink()
    with pytest.raises(NotFound, match="no longer stored") as refused:
        downloads[0].archive(OWNER, MODEL)
    assert str(tmp_path) not in refused.value.message
