"""Adapters from S3 copied to the engine's local cache (service/engine/adapter_cache.py)."""

from __future__ import annotations

import time
from pathlib import Path

from service.engine.adapter_cache import AdapterCache
from tests.s3_server import S3Server
from trainer import storage


def _stored_adapter(root: str, name: str, tmp_path: Path) -> str:
    folder = tmp_path / "made" / name
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(name.encode())
    (folder / "adapter_config.json").write_text("{}")
    (folder / "optimizer.pt").write_bytes(b"resume state only")
    location = f"{root}/{name}"
    storage.put(folder, location)
    return location


def test_a_stored_adapter_is_copied_once_without_its_training_state(s3_env: S3Server, tmp_path: Path) -> None:
    cache = AdapterCache(tmp_path / "cache")
    location = _stored_adapter(s3_env.storage_url(tmp_path.name), "ckpt-1", tmp_path)
    path = Path(cache.local_path(location))
    assert sorted(p.name for p in path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    storage.remove(location)  # a second use is served from the cache alone
    assert cache.local_path(location) == str(path)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [path.name]  # no partial copy left


def test_local_adapters_are_used_in_place(tmp_path: Path) -> None:
    assert AdapterCache(tmp_path / "cache").local_path(str(tmp_path / "adapter")) == str(tmp_path / "adapter")


def test_the_least_recently_used_copies_are_removed_beyond_the_cap(s3_env: S3Server, tmp_path: Path) -> None:
    cache = AdapterCache(tmp_path / "cache", max_entries=2)
    root = s3_env.storage_url(tmp_path.name)
    a, b, c = (_stored_adapter(root, name, tmp_path) for name in ("a", "b", "c"))
    path_a = cache.local_path(a)
    time.sleep(0.01)
    path_b = cache.local_path(b)
    time.sleep(0.01)
    cache.local_path(a)  # used again: b is now the least recent
    time.sleep(0.01)
    cache.local_path(c)
    assert Path(path_a).is_dir() and not Path(path_b).exists()
