"""`python -m trainer.export`: a fine-tuned model as plain weights, its adapter merged into its base.

    python -m trainer.export --base MODEL_FOLDER --adapter LOCATION --out LOCATION.zip [--scratch DIR]

The base loads in its own dtype (the `dtype` of its config.json, as `dtype="auto"` reads it: a bf16
base stays bf16, never upcast), the adapter is merged into it (peft's `merge_and_unload`, checked
for NaNs), and the result is saved as safetensors shards with the config, the generation config
and the base's tokenizer (its chat template included), then zipped to `--out` (a path or s3://,
trainer/storage.py). Events go to stdout as JSON lines (trainer/export_events.py); the details of
a failure go to stderr, which the gateway keeps in the export's log.

It runs on the CPU, whatever the machine has: merging is a few small matrix products per layer,
bounded by memory and disk rather than compute, and a process that never opens a CUDA context
cannot take GPU memory from the serving engine or a trainer. It needs about the base's size in RAM.

Exit status: 0 when the zip is complete, 1 after an `error` event, anything else a crash.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path
from typing import Any

from trainer import storage
from trainer.checkpoints import RESUME_STATE_FILES
from trainer.events import event_stream
from trainer.export_events import ExportedEvent, ExportEventWriter, partial_zip

DEFAULT_MAX_SHARD_SIZE = "5GB"


class ExportError(Exception):
    """A failure the export understood; `message` is for the user and names no server path."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def export_merged(base: Path, adapter: str, out: str, scratch: Path, max_shard_size: str) -> ExportedEvent:
    """Merge the adapter stored at `adapter` into the base model folder `base` and store the zip
    at `out`. `scratch` is a local folder for the merged files and, with object storage, the zip."""
    started = time.perf_counter()
    merged = _merged_model(base, _local_adapter(adapter, scratch))
    dtype = str(merged.dtype).removeprefix("torch.")
    folder = scratch / "merged"
    merged.save_pretrained(folder, max_shard_size=max_shard_size)
    del merged
    _save_tokenizer(base, folder)
    shards = len(list(folder.glob("*.safetensors")))
    size = _store_zip(folder, out, scratch)
    return ExportedEvent(bytes=size, shards=shards, dtype=dtype, seconds=time.perf_counter() - started)


def _local_adapter(adapter: str, scratch: Path) -> Path:
    """The adapter as a local folder: itself, or copied from object storage without a checkpoint's
    optimizer and scheduler state (they can be larger than the adapter, and merging needs none)."""
    try:
        if not storage.is_remote(adapter):
            local = Path(adapter)
        else:
            local = storage.fetch(adapter, scratch / "adapter", skip=RESUME_STATE_FILES)
        if not (local / "adapter_config.json").is_file():
            raise FileNotFoundError("adapter_config.json")
    except Exception as exc:
        raise ExportError("adapter_not_found", "The model's adapter could not be read.") from exc
    return local


def _merged_model(base: Path, adapter: Path) -> Any:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(base, dtype="auto", device_map={"": "cpu"})
    except (OSError, ValueError) as exc:
        raise ExportError("base_model_load_failed", "The base model could not be loaded.") from exc
    try:
        with torch.no_grad():
            peft_model = PeftModel.from_pretrained(model, str(adapter))
            return peft_model.merge_and_unload(safe_merge=True)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ExportError(
            "merge_failed", "The adapter could not be merged into its base model (it does not fit it)."
        ) from exc


def _save_tokenizer(base: Path, folder: Path) -> None:
    """The base's tokenizer, which serving uses (and training rendered the examples with)."""
    from transformers import AutoTokenizer

    try:
        AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise ExportError(
            "base_model_load_failed", "The base model's tokenizer could not be loaded."
        ) from exc


def _store_zip(folder: Path, out: str, scratch: Path) -> int:
    """Zip the folder's files (at the zip's root) to `out`; returns the zip's size. A local zip is
    written beside `out` and renamed, so `out` is either absent or whole. Each file is deleted once
    zipped, so the disk holds about one copy of the weights at a time."""
    remote = storage.is_remote(out)
    target = scratch / "export.zip" if remote else partial_zip(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(target, "w", allowZip64=True) as archive:
            for path in sorted(p for p in folder.iterdir() if p.is_file()):
                # Weights barely compress and are large: stored, so writing and unzipping stay fast.
                kind = zipfile.ZIP_STORED if path.suffix == ".safetensors" else zipfile.ZIP_DEFLATED
                archive.write(path, path.name, compress_type=kind)
                path.unlink()
        size = target.stat().st_size
        if remote:
            storage.put(target, out)
        else:
            os.replace(target, out)
    finally:
        target.unlink(missing_ok=True)
    return size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.export", description=__doc__)
    parser.add_argument("--base", required=True, type=Path, help="the base model's local folder")
    parser.add_argument("--adapter", required=True, help="the adapter's folder: a path or an s3:// URL")
    parser.add_argument("--out", required=True, help="where the zip goes: a path or an s3:// URL")
    parser.add_argument("--scratch", type=Path, help="a local working folder (default: a temporary one)")
    parser.add_argument("--max-shard-size", default=DEFAULT_MAX_SHARD_SIZE, help="e.g. 5GB, 500MB")
    args = parser.parse_args(argv)
    events = ExportEventWriter(event_stream())
    events.message("Merging the adapter into the base model")
    try:
        with contextlib.ExitStack() as cleanup:
            scratch = args.scratch or Path(
                cleanup.enter_context(tempfile.TemporaryDirectory(prefix="opentune-"))
            )
            scratch.mkdir(parents=True, exist_ok=True)
            events.emit(export_merged(args.base, args.adapter, args.out, scratch, args.max_shard_size))
        return 0
    except ExportError as exc:
        traceback.print_exc()
        events.error(exc.code, exc.message)
    except MemoryError:
        traceback.print_exc()
        events.error("out_of_memory", "The server ran out of memory while merging the model.")
    except OSError:
        traceback.print_exc()  # e.g. no space left on the device; the path stays in the log
        events.error("export_write_failed", "The merged model could not be written.")
    return 1


if __name__ == "__main__":
    sys.exit(main())
