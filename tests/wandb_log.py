"""Reading an offline W&B run's `.wandb` file (for tests): the records its `wandb sync` would
upload. The file is W&B's LevelDB-style log (a 7-byte header, then 32 KiB blocks of records, each
with a 7-byte header: CRC32, length, type FULL/FIRST/MIDDLE/LAST) of `wandb_internal_pb2.Record`
protobufs; wandb itself no longer ships a Python reader."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[Any]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run log"
    position, pending = 7, b""
    while position + 7 <= len(data):
        left_in_block = BLOCK - position % BLOCK
        if left_in_block < 7:  # padding at the end of a block
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        payload = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0 and length == 0:  # zeroed tail
            break
        pending = payload if kind in (FULL, FIRST) else pending + payload
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def _key(item: Any) -> str:
    return str(item.key or "/".join(item.nested_key))


def history(path: Path) -> list[dict[str, Any]]:
    """Every logged step, as {key: value}."""
    import json

    return [
        {_key(i): json.loads(i.value_json) for i in r.history.item}
        for r in records(path)
        if r.WhichOneof("record_type") == "history"
    ]


def config(path: Path) -> dict[str, Any]:
    """The run's config, merged from every update."""
    import json

    merged: dict[str, Any] = {}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        updates = r.config.update if kind == "config" else r.run.config.update if kind == "run" else []
        merged |= {_key(i): json.loads(i.value_json) for i in updates}
    return merged


def artifacts(path: Path) -> list[tuple[str, str]]:
    """(name, type) of each artifact the run logged."""
    return [
        (r.artifact.name, r.artifact.type) for r in records(path) if r.WhichOneof("record_type") == "artifact"
    ]
