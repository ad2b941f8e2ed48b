"""Adapter imports (service/weights/): the zip is unpacked without trusting it, the adapter is
checked servable on the base before anything is stored, and each way it can be wrong is a 400 that
names the problem, never a server path. An accepted import is a model of the organization's (listed,
served, shareable, deletable with its files, counted against its storage quota), on SQLite and
Postgres."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.access import BodySizeLimitMiddleware
from service.catalog import ModelCatalog
from service.engine.adapters import AdapterRegistry
from service.engine.fleet import EngineFleet
from service.errors import EngineRejected, InvalidRequest, NotFound, OpenAIError, QuotaExceeded
from service.files import FileStore, StorageQuota
from service.jobs.checkpoints import CheckpointStore
from service.jobs.model_records import JobModelRecords
from service.jobs.permissions import CheckpointPermissions
from service.jobs.store import JobStore
from service.store import ApiKeyRow, Database
from service.weights.download import AdapterDownloads
from service.weights.importer import AdapterImporter, ImportLimits
from service.weights.imports import ImportedModels
from service.weights.records import CombinedRecords
from service.weights.servability import base_model_shape, check_servable
from service.weights.unpack import unpack_adapter
from tests.service.adapter_files import (
    adapter_config,
    adapter_files,
    adapter_tensors,
    write_base,
    zip_bytes,
)
from tests.service.fake_engine import FakeEngine, one_replica
from trainer import storage

OWNER, OTHER = "org-acme", "org-globex"
MAX_RANK = 64


def _check(tmp_path: Path, archive: bytes, max_bytes: int = 10**8) -> dict[str, Any]:
    """Unpack and check `archive` against a base of hidden size 32 with 2 layers."""
    base = base_model_shape("tiny", write_base(tmp_path / "base"))
    folder = tmp_path / "adapter"
    unpack_adapter(io.BytesIO(archive), folder, max_bytes)
    return check_servable(folder, base, MAX_RANK)


def _refusal(tmp_path: Path, archive: bytes, max_bytes: int = 10**8) -> str:
    with pytest.raises(InvalidRequest) as refused:
        _check(tmp_path, archive, max_bytes)
    assert refused.value.status_code == 400 and refused.value.param == "file"
    assert str(tmp_path) not in refused.value.message
    return refused.value.message


def _corrupt(archive: bytes) -> bytes:
    """The weights member's data damaged in the middle (its CRC no longer matches)."""
    info = zipfile.ZipFile(io.BytesIO(archive)).getinfo("adapter_model.safetensors")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.compress_size // 2
    damaged = bytearray(archive)
    damaged[start : start + 8] = bytes(8)
    return bytes(damaged)


def _with(**changes: Any) -> bytes:
    files = adapter_files()
    files.update(changes)
    return zip_bytes(files)


REFUSALS = {
    "not a zip": (b"PK\x03\x04 but not really a zip", "not a zip archive"),
    "a truncated zip": (zip_bytes(adapter_files())[:300], "not a zip archive"),
    "a corrupt member": (
        _corrupt(zip_bytes(adapter_files(), compression=zipfile.ZIP_STORED)),
        "corrupt data",
    ),
    "path traversal": (zip_bytes({**adapter_files(), "../../etc/cron.d/x": b"*"}), "unsafe path"),
    "an absolute path": (zip_bytes({**adapter_files(), "/etc/passwd": b"x"}), "unsafe path"),
    "a wrong base hidden size": (
        zip_bytes(adapter_files(tensors=adapter_tensors(hidden=48))),
        "needs [8, 32] for rank 8: the adapter was trained for another base model",
    ),
    "too high a rank": (
        zip_bytes(adapter_files(adapter_config(r=128), adapter_tensors(r=128))),
        "LoRA rank 128 is higher than this server's engine serves (max LoRA rank 64)",
    ),
    "a rank_pattern too high": (
        zip_bytes(adapter_files(adapter_config(rank_pattern={"q_proj": 256}))),
        "LoRA rank 256 is higher",
    ),
    "an unservable target module": (
        zip_bytes(adapter_files(adapter_config(targets=["q_proj", "lm_head"]))),
        "targets module 'lm_head', which vLLM cannot serve LoRA on",
    ),
    "a target module the base lacks": (
        zip_bytes(adapter_files(adapter_config(targets=["qkv_proj"]))),
        "targets module 'qkv_proj', which base model `tiny` does not have",
    ),
    "a layer the base lacks": (
        zip_bytes(adapter_files(tensors=adapter_tensors(layers=3))),
        "'model.layers.2.self_attn.q_proj', which base model `tiny` does not have",
    ),
    "modules_to_save": (
        zip_bytes(adapter_files(adapter_config(modules_to_save=["lm_head"]))),
        "modules_to_save ['lm_head']",
    ),
    "embedding LoRA": (
        zip_bytes(
            adapter_files(
                tensors={
                    **adapter_tensors(),
                    "base_model.model.model.embed_tokens.lora_embedding_A": np.zeros((8, 64), np.float32),
                }
            )
        ),
        "adapts embeddings (lora_embedding), which vLLM cannot load",
    ),
    "trainable tokens": (
        zip_bytes(adapter_files(adapter_config(trainable_token_indices=[5, 6]))),
        "extra token embeddings",
    ),
    "DoRA": (zip_bytes(adapter_files(adapter_config(use_dora=True))), "DoRA"),
    "not LoRA": (zip_bytes(adapter_files(adapter_config(peft_type="IA3"))), "not a LoRA config"),
    "a config that is not JSON": (_with(**{"adapter_config.json": b"{r: 8"}), "not valid JSON"),
    "weights that are not safetensors": (
        _with(**{"adapter_model.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}"}),
        "not a valid safetensors file",
    ),
    "half a LoRA pair": (
        zip_bytes(
            adapter_files(
                tensors={
                    k: v for k, v in adapter_tensors().items() if ".layers.1.self_attn.v_proj.lora_B" not in k
                }
            )
        ),
        "lora_A but not its pair for 'model.layers.1.self_attn.v_proj'",
    ),
    "pickled weights only": (
        zip_bytes(
            {"adapter_config.json": adapter_files()["adapter_config.json"], "adapter_model.bin": b"\x80"}
        ),
        "pickle, which is never loaded here",
    ),
    "no adapter_config.json": (
        zip_bytes({"adapter_model.safetensors": b"x"}),
        "no single adapter_config.json",
    ),
    "two adapters": (
        zip_bytes({f"{folder}/{n}": d for folder in ("a", "b") for n, d in adapter_files().items()}),
        "found in several folders",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_each_way_an_adapter_can_be_wrong_is_a_400_naming_it(tmp_path: Path, case: str) -> None:
    archive, expected = REFUSALS[case]
    assert expected in _refusal(tmp_path, archive)


def test_a_zip_bomb_is_refused_from_its_directory_before_anything_is_written(tmp_path: Path) -> None:
    bomb = zip_bytes({**adapter_files(), "adapter_model.safetensors": bytes(200 * 2**20)})
    assert len(bomb) < 2**20  # 200 MiB of zeros deflate to about 200 KiB
    assert "decompresses to 209,7" in _refusal(tmp_path, bomb, max_bytes=100 * 2**20)
    assert not (tmp_path / "adapter").exists()


def test_a_symbolic_link_member_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in adapter_files().items():
            archive.writestr(name, data)
        link = zipfile.ZipInfo("tokenizer.json")
        link.external_attr = 0o120777 << 16
        archive.writestr(link, "/etc/shadow")
    assert "symbolic link" in _refusal(tmp_path, buffer.getvalue())


@pytest.mark.parametrize("root", ["", "my-adapter/"])
def test_only_the_adapters_files_are_kept_from_the_top_level_or_one_folder(tmp_path: Path, root: str) -> None:
    files = {**adapter_files(), "notes/secret.txt": b"x", "optimizer.pt": b"\x80"}
    config = _check(tmp_path, zip_bytes(files, root=root))
    assert (config["r"], config["target_modules"]) == (8, ["q_proj", "v_proj"])
    kept = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert kept == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "chat_template.jinja",
        "tokenizer_config.json",
    ]


# -- the importer, on both databases ------------------------------------------------------------


@pytest.fixture
def setup(database_url: str, tmp_path: Path) -> dict[str, Any]:
    db = Database(database_url)
    db.migrate()
    with db.session() as session:
        session.add(ApiKeyRow(id="key-1", organization_id=OTHER, key_hash="1" * 64, hint="sk", created_at=1))
    engine = FakeEngine()
    base_path = write_base(tmp_path / "base")
    fleet = EngineFleet([one_replica("tiny", base_path, engine.client, AdapterRegistry(engine.client, 4))])
    imports = ImportedModels(db, str(tmp_path / "storage" / "imports"))
    files = FileStore(db, str(tmp_path / "storage" / "files"), StorageQuota(max_files=10, max_bytes=50_000))
    files.stored_elsewhere.append(imports.stored_bytes)
    records = CombinedRecords([JobModelRecords(JobStore(db), CheckpointStore(db)), imports])
    catalog = ModelCatalog(records, fleet, started_at=0)
    limits = ImportLimits(max_bytes=10**7, max_lora_rank=MAX_RANK, scratch=tmp_path / "scratch")
    importer = AdapterImporter(catalog, fleet, imports, files, limits)
    return {
        "db": db,
        "engine": engine,
        "catalog": catalog,
        "importer": importer,
        "files": files,
        "tmp": tmp_path,
    }


async def _import(setup: dict[str, Any], org: str = OWNER, **fields: Any) -> Any:
    archive = fields.pop("archive", zip_bytes(adapter_files()))
    arguments = {"base_model": "tiny", "suffix": "imported", **fields}
    return await setup["importer"].import_adapter(org, io.BytesIO(archive), "peft.zip", **arguments)


@pytest.mark.anyio
async def test_an_imported_adapter_is_a_served_model_of_the_organization(setup: dict[str, Any]) -> None:
    catalog: ModelCatalog = setup["catalog"]
    model = await _import(setup)
    assert model.id.startswith("ft:tiny:acme:imported:") and len(model.id.rsplit(":", 1)[1]) == 8
    assert (model.object, model.owned_by) == ("model", OWNER)
    assert model.id in [m.id for m in catalog.list(OWNER).data]
    served = catalog.resolve(OWNER, model.id)
    assert setup["engine"].loaded == {model.id: served.adapter_path}  # loaded at once, as a job's
    assert served.adapter_path is not None and served.adapter_path.startswith(
        str(setup["tmp"] / "storage" / "imports")
    )
    stored = sorted(p.name for p in Path(served.adapter_path).iterdir())
    assert stored == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "chat_template.jinja",
        "tokenizer_config.json",
    ]
    assert not list((setup["tmp"] / "scratch").iterdir())  # the unpacked copy is gone

    with pytest.raises(NotFound):  # another organization sees nothing of it
        catalog.resolve(OTHER, model.id)
    with pytest.raises(NotFound):
        await catalog.delete(OTHER, model.id)
    with pytest.raises(NotFound) as onto_theirs:  # nor can it import "onto" it
        await _import(setup, org=OTHER, base_model=model.id)
    assert onto_theirs.value.param == "base_model"
    with pytest.raises(InvalidRequest, match="base_model must be a base model served here"):
        await _import(setup, base_model=model.id)

    deleted = await catalog.delete(OWNER, model.id)
    assert deleted.deleted and setup["engine"].unloads() == [model.id]
    assert not Path(served.adapter_path).exists()
    with pytest.raises(NotFound):
        catalog.resolve(OWNER, model.id)


@pytest.mark.anyio
async def test_an_imported_model_is_shared_like_a_checkpoint(setup: dict[str, Any]) -> None:
    catalog: ModelCatalog = setup["catalog"]
    model = await _import(setup, suffix=None)
    assert model.id.startswith("ft:tiny:acme::")
    permissions = CheckpointPermissions(setup["db"], catalog.owns, "org-default")
    permissions.create(OWNER, model.id, [OTHER])
    assert catalog.resolve(OTHER, model.id).owned_by == OWNER
    with pytest.raises(NotFound):  # the grantee cannot delete it
        await catalog.delete(OTHER, model.id)
    await catalog.delete(OWNER, model.id)
    assert catalog.records.shared_with(OTHER) == []


@pytest.mark.anyio
async def test_imports_count_against_the_storage_quota(setup: dict[str, Any]) -> None:
    files: FileStore = setup["files"]
    assert files.check_quota(OWNER) == 50_000
    await _import(setup)
    left = files.check_quota(OWNER)
    assert left is not None and 40_000 < left < 50_000  # the adapter's ~6 KB
    big = adapter_files(adapter_config(r=64), adapter_tensors(r=64))
    with pytest.raises(QuotaExceeded):
        await _import(setup, archive=zip_bytes(big))
    assert files.check_quota(OTHER) == 50_000


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"suffix": "no spaces"}, "suffix"),
        ({"base_model": "nope"}, "base_model"),
        ({"archive": b"x"}, "file"),
    ],
)
async def test_a_refused_import_leaves_nothing(
    setup: dict[str, Any], fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(OpenAIError) as refused:
        await _import(setup, **fields)
    assert refused.value.param == param and refused.value.status_code in (400, 404)
    assert setup["catalog"].records.fine_tuned(OWNER) == []
    assert not (setup["tmp"] / "storage" / "imports").exists() or not list(
        (setup["tmp"] / "storage" / "imports").iterdir()
    )


@pytest.mark.anyio
async def test_an_adapter_the_engine_refuses_is_not_imported(setup: dict[str, Any]) -> None:
    engine: FakeEngine = setup["engine"]

    async def refuse(name: str, path: str) -> None:
        raise EngineRejected(400, {"message": f"cannot load {path}"})

    engine.load_adapter = refuse  # type: ignore[method-assign]
    with pytest.raises(InvalidRequest) as refused:
        await _import(setup)
    assert "could not load this adapter" in refused.value.message and "storage" not in refused.value.message
    assert setup["catalog"].records.fine_tuned(OWNER) == []
    assert list((setup["tmp"] / "storage" / "imports").iterdir()) == []


def test_what_a_dead_gateways_imports_left_behind_is_swept_at_start(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    (scratch / "import-old").mkdir(parents=True)
    os.utime(scratch / "import-old", (1, 1))
    (scratch / "import-running").mkdir()
    unused: Any = None
    AdapterImporter(unused, unused, unused, unused, ImportLimits(1, 1, scratch))
    assert [p.name for p in scratch.iterdir()] == ["import-running"]


@pytest.mark.anyio
async def test_an_import_round_trips_through_either_storage(storage_root: str, tmp_path: Path) -> None:
    """Stored in the data folder or S3, downloaded from there as it was sent, removed on delete."""
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    engine = FakeEngine()
    fleet = EngineFleet(
        [one_replica("tiny", write_base(tmp_path / "base"), engine.client, AdapterRegistry(engine.client, 4))]
    )
    imports = ImportedModels(db, storage.join(storage_root, "imports"))
    jobs, checkpoints = JobStore(db), CheckpointStore(db)
    catalog = ModelCatalog(
        CombinedRecords([JobModelRecords(jobs, checkpoints), imports]), fleet, started_at=0
    )
    limits = ImportLimits(max_bytes=10**7, max_lora_rank=MAX_RANK, scratch=tmp_path / "scratch")
    importer = AdapterImporter(
        catalog, fleet, imports, FileStore(db, storage.join(storage_root, "files")), limits
    )
    sent = adapter_files()
    model = await importer.import_adapter(
        OWNER, io.BytesIO(zip_bytes(sent, root="x/")), "x.zip", "tiny", None
    )
    location = catalog.resolve(OWNER, model.id).adapter_path
    assert location is not None and location.startswith(storage_root)

    downloads = AdapterDownloads(catalog, jobs, checkpoints, imports, fleet, {"tiny": "org/tiny"})
    archive = zipfile.ZipFile(io.BytesIO(b"".join(downloads.archive(OWNER, model.id).chunks)))
    assert archive.read("adapter_model.safetensors") == sent["adapter_model.safetensors"]
    assert archive.read("chat_template.jinja") == sent["chat_template.jinja"]
    assert json.loads(archive.read("adapter_config.json"))["base_model_name_or_path"] == "org/tiny"

    await catalog.delete(OWNER, model.id)
    assert not storage.exists(location)


def test_an_import_body_has_its_own_cap() -> None:
    unused: Any = None
    limits = BodySizeLimitMiddleware(unused, upload_max_bytes=10, max_bytes=5, import_max_bytes=1000)
    assert limits.limit_for({"method": "POST", "path": "/v1/models/import"}) == 1000
    assert limits.limit_for({"method": "POST", "path": "/v1/models/other"}) == 5
