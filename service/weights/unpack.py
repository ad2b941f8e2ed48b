"""Unpacking an uploaded adapter zip without trusting it.

Refused outright: anything that is not a zip, encrypted members, members whose names could leave
the folder they are extracted to (absolute, `..`, backslashes, drive letters) or that are symbolic
links, more than MAX_MEMBERS members. Kept: only the files an adapter needs (layout.ADAPTER_FILES),
from the top level or from the one folder that holds adapter_config.json; everything else is left
in the archive. What the kept files decompress to is bounded before a byte is written (from the
central directory) and again while writing (a lying header cannot overrun it), so a zip bomb
costs nothing; a corrupt member (bad CRC, truncated data) is a 400 too.
"""

from __future__ import annotations

import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from service.errors import InvalidRequest
from service.weights.layout import ADAPTER_CONFIG, ADAPTER_FILES, ADAPTER_WEIGHTS, PICKLED_WEIGHTS

MAX_MEMBERS = 1000
# Everything but the weights is configuration or a tokenizer: bounded well below the weights.
MAX_SMALL_FILE_BYTES = 64 * 1024 * 1024
_CHUNK = 1024 * 1024


def _refuse(message: str) -> InvalidRequest:
    return InvalidRequest(message, param="file", code="invalid_adapter_archive")


def unpack_adapter(archive: BinaryIO, destination: Path, max_bytes: int) -> int:
    """Extract the adapter's files into the (new) folder `destination`; the bytes written."""
    try:
        zipped = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError):
        raise _refuse(
            "The file is not a zip archive; send a PEFT adapter folder zipped (adapter_config.json "
            "and adapter_model.safetensors at its top level or in one folder)."
        ) from None
    with zipped:
        members = zipped.infolist()
        if len(members) > MAX_MEMBERS:
            raise _refuse(
                f"The archive has {len(members)} members; an adapter needs far fewer (at most {MAX_MEMBERS})."
            )
        for member in members:
            _check_member(member)
        kept = _kept_members(members)
        _check_sizes(kept, max_bytes)
        destination.mkdir(parents=True)
        return sum(_extract(zipped, member, destination / name) for name, member in kept.items())


def _check_member(member: zipfile.ZipInfo) -> None:
    name = member.filename
    parts = PurePosixPath(name).parts
    unsafe = (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\0" in name
        or ".." in parts
        or (bool(parts) and ":" in parts[0])
    )
    if unsafe:
        raise _refuse(
            f"The archive member {name[:200]!r} has an unsafe path (absolute or leaving its folder)."
        )
    if stat.S_ISLNK(member.external_attr >> 16):
        raise _refuse(f"The archive member {name[:200]!r} is a symbolic link; an adapter is plain files.")
    if member.flag_bits & 0x1:
        raise _refuse("The archive is encrypted; send it without a password.")


def _kept_members(members: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
    """The adapter's files by name, from the top level or the one folder with adapter_config.json."""
    files = [m for m in members if not m.is_dir()]
    configs = [m.filename for m in files if PurePosixPath(m.filename).name == ADAPTER_CONFIG]
    roots = {c.removesuffix(ADAPTER_CONFIG) for c in configs if c.count("/") <= 1}
    if "" in roots:
        root = ""
    elif len(roots) == 1:
        root = roots.pop()
    else:
        where = "several folders" if roots else "its top level nor in one folder"
        raise _refuse(f"The archive has no single {ADAPTER_CONFIG}: found in {where}.")
    kept: dict[str, zipfile.ZipInfo] = {}
    for member in files:
        name = member.filename.removeprefix(root) if member.filename.startswith(root) else None
        if name is not None and "/" not in name:
            if name == PICKLED_WEIGHTS and not any(m.filename == root + ADAPTER_WEIGHTS for m in files):
                raise _refuse(
                    f"The adapter's weights are {PICKLED_WEIGHTS} (pickle, which is never loaded here); "
                    f"save them as {ADAPTER_WEIGHTS} (peft's save_pretrained does by default)."
                )
            if name in ADAPTER_FILES:
                kept[name] = member
    if ADAPTER_WEIGHTS not in kept:
        raise _refuse(f"The archive has no {ADAPTER_WEIGHTS} beside its {ADAPTER_CONFIG}.")
    return kept


def _check_sizes(kept: dict[str, zipfile.ZipInfo], max_bytes: int) -> None:
    total = sum(member.file_size for member in kept.values())
    if total > max_bytes:
        raise _refuse(f"The adapter decompresses to {total:,} bytes, more than the {max_bytes:,} allowed.")
    for name, member in kept.items():
        if name != ADAPTER_WEIGHTS and member.file_size > MAX_SMALL_FILE_BYTES:
            raise _refuse(
                f"{name} decompresses to {member.file_size:,} bytes; at most {MAX_SMALL_FILE_BYTES:,}."
            )


def _extract(zipped: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path) -> int:
    """Write one member (no more than its declared size), checking its CRC; the bytes written."""
    written = 0
    try:
        with zipped.open(member) as source, target.open("wb") as out:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                if written > member.file_size:
                    raise _refuse(f"{target.name} is larger than the archive says.")
                out.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError) as exc:
        target.unlink(missing_ok=True)
        reason = (
            "an unsupported compression method" if isinstance(exc, NotImplementedError) else "corrupt data"
        )
        raise _refuse(f"The archive member {target.name} cannot be read ({reason}).") from None
    return written
