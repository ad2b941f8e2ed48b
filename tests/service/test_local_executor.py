"""LocalProcessExecutor (service/jobs/local_executor.py) keeps the TrainerExecutor contract with
real trainer processes on the tiny model: typed events until the trainer exits, a stop request ends
with `stopped` at a checkpoint a new trainer continues from, a kill ends it with signal 9."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.jobs.local_executor import LocalProcessExecutor
from tests.strict_format import jsonl, training_examples
from trainer.events import MetricsEvent, ResultEvent, StoppedEvent
from trainer.spec import TrainingSpec

pytestmark = pytest.mark.anyio


def _spec(executor: LocalProcessExecutor, tiny_model: Path, tmp_path: Path, job_id: str) -> TrainingSpec:
    data = tmp_path / "train.jsonl"
    data.write_bytes(jsonl(training_examples(10)))
    return TrainingSpec(
        job_id=job_id,
        base_model=str(tiny_model),
        training_file=data,
        output_dir=Path(executor.output(job_id)),
        n_epochs=2,
        batch_size=1,
        learning_rate=1e-3,
    )


async def test_a_trainer_reports_typed_events_and_its_result(tiny_model: Path, tmp_path: Path) -> None:
    executor = LocalProcessExecutor(str(tmp_path / "jobs"), tmp_path / "jobs")
    run = await executor.start(_spec(executor, tiny_model, tmp_path, "ftjob-ok"))
    events = [event async for event in run.events()]
    ended = await run.wait()
    assert ended.returncode == 0 and isinstance(ended.outcome, ResultEvent)
    assert [e.step for e in events if isinstance(e, MetricsEvent)] == list(range(1, 21))
    assert Path(ended.outcome.adapter_dir).is_dir()
    assert executor.latest_checkpoint_step("ftjob-ok") == 20
    assert (tmp_path / "jobs" / "ftjob-ok" / "trainer.log").exists()
    assert await executor.attach("ftjob-ok", run.ref) is None  # local trainers never outlive their gateway


async def test_a_stopped_trainer_says_where_it_stopped_and_a_killed_one_says_nothing(
    tiny_model: Path, tmp_path: Path
) -> None:
    executor = LocalProcessExecutor(str(tmp_path / "jobs"), tmp_path / "jobs")
    spec = _spec(executor, tiny_model, tmp_path, "ftjob-stop")
    run = await executor.start(spec)
    async for event in run.events():
        if isinstance(event, MetricsEvent) and event.step == 3:
            run.stop()
    ended = await run.wait()
    assert ended.returncode == 0 and isinstance(ended.outcome, StoppedEvent)
    assert ended.outcome.step == executor.latest_checkpoint_step("ftjob-stop") >= 3

    again = await executor.start(spec)  # continues from that checkpoint ...
    async for event in again.events():
        if isinstance(event, MetricsEvent):
            assert event.step > ended.outcome.step
            again.kill()  # ... and dies without a word
    killed = await again.wait()
    assert killed.returncode == -9 and killed.outcome is None and killed.describe() == "signal 9"
