"""A trainer whose job lives in object storage (trainer/staging.py), against the real S3 server:
inputs and stored checkpoints copied in, output copied out before the events that name it."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from tests.s3_server import S3Server
from trainer import storage
from trainer.checkpoints import latest_stored_step
from trainer.events import ResultEvent, parse_event
from trainer.spec import StoredLocations, TrainingSpec
from trainer.staging import StoredOutputEvents, stage


def _checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"weights-%d" % step)
    (path / "optimizer.pt").write_bytes(b"optimizer-%d" % step)
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def _spec(root: str, validation: bool = False) -> TrainingSpec:
    stored = StoredLocations(
        training_file=f"{root}/files/file-train",
        validation_file=f"{root}/files/file-valid" if validation else None,
        output=f"{root}/jobs/ftjob-1/output",
    )
    return TrainingSpec(
        job_id="ftjob-1",
        base_model="tiny",
        training_file=Path("input/training.jsonl"),
        validation_file=Path("input/validation.jsonl") if validation else None,
        output_dir=Path("output"),
        n_epochs=1,
        batch_size=1,
        learning_rate=1e-4,
        token_cache_dir=Path("/gateway/cache"),
        stored=stored,
    )


def test_stage_copies_inputs_and_the_stored_checkpoints(s3_env: S3Server, tmp_path: Path) -> None:
    root = s3_env.storage_url(tmp_path.name)
    spec = _spec(root, validation=True)
    storage.write_stream(f"{root}/files/file-train", io.BytesIO(b'{"train": 1}\n'))
    storage.write_stream(f"{root}/files/file-valid", io.BytesIO(b'{"valid": 1}\n'))
    local = tmp_path / "made"
    checkpoints = f"{root}/jobs/ftjob-1/output/checkpoints"
    for step, complete in ((4, True), (8, True), (12, False)):  # 12: its copy was cut short
        storage.put(_checkpoint(local, step, complete), f"{checkpoints}/checkpoint-{step}")
    storage.write_stream(f"{root}/jobs/ftjob-1/output/metrics.csv", io.BytesIO(b"step,train_loss\n8,1.0\n"))
    assert latest_stored_step(checkpoints) == 8

    staged = stage(spec, tmp_path / "scratch")
    assert staged.training_file == tmp_path / "scratch" / "input" / "training.jsonl"
    assert staged.training_file.read_bytes() == b'{"train": 1}\n'
    assert staged.validation_file is not None and staged.validation_file.read_bytes() == b'{"valid": 1}\n'
    assert staged.token_cache_dir is None  # the gateway's cache is not on the trainer's machine
    names = sorted(p.name for p in staged.checkpoints_dir.iterdir())
    assert names == ["checkpoint-4", "checkpoint-8"]
    assert (staged.checkpoints_dir / "checkpoint-8" / "optimizer.pt").exists()  # the resume point
    assert not (staged.checkpoints_dir / "checkpoint-4" / "optimizer.pt").exists()  # a model only
    assert staged.metrics_csv.read_text().endswith("8,1.0\n")


def test_output_is_stored_before_the_event_that_names_it(s3_env: S3Server, tmp_path: Path) -> None:
    root = s3_env.storage_url(tmp_path.name)
    storage.write_stream(f"{root}/files/file-train", io.BytesIO(b"{}\n"))
    staged = stage(_spec(root), tmp_path / "scratch")
    stream = io.StringIO()
    events = StoredOutputEvents(stream, staged)
    checkpoints = f"{root}/jobs/ftjob-1/output/checkpoints"

    first = _checkpoint(staged.checkpoints_dir, 2)
    staged.metrics_csv.write_text("step,train_loss\n2,1.5\n")
    events.checkpoint(2, str(first), True, {"step": 2}, [2])
    second = _checkpoint(staged.checkpoints_dir, 4)
    first_copy = f"{checkpoints}/checkpoint-2"
    shutil.rmtree(first)  # the trainer pruned it
    events.checkpoint(4, str(second), True, {"step": 4}, [4])
    assert latest_stored_step(checkpoints) == 4 and not storage.exists(first_copy)

    adapter = staged.output_dir / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"final")
    events.result(
        ResultEvent(adapter_dir=str(adapter), metrics_csv=str(staged.metrics_csv), trained_tokens=9)
    )
    events.stopped(4, str(second))

    reported = [parse_event(line) for line in stream.getvalue().splitlines()]
    assert [getattr(e, "path", None) for e in reported[:2]] == [first_copy, f"{checkpoints}/checkpoint-4"]
    result = reported[2]
    assert isinstance(result, ResultEvent) and result.adapter_dir == f"{root}/jobs/ftjob-1/output/adapter"
    assert b"".join(storage.iter_bytes(f"{result.adapter_dir}/adapter_model.safetensors")) == b"final"
    assert b"".join(storage.iter_bytes(result.metrics_csv)).endswith(b"2,1.5\n")
    assert getattr(reported[3], "checkpoint", None) == f"{checkpoints}/checkpoint-4"
