"""How a trainer's end changes its job (service/jobs/outcomes.py's `decide`), as a table."""

from __future__ import annotations

import pytest

from service.jobs.executor import TrainerExit
from service.jobs.outcomes import FailJob, Leave, Requeue, RetryBudget, Succeed, decide
from service.jobs.states import JobStatus
from trainer.events import ErrorEvent, ResultEvent, StoppedEvent

RESULT = ResultEvent(
    adapter_dir="/srv/jobs/j/output/adapter", metrics_csv="/srv/jobs/j/m.csv", trained_tokens=9
)
FRESH = RetryBudget(used=0, limit=2)
RUNNING = JobStatus.RUNNING


def test_a_reported_result_succeeds_the_job_even_if_it_was_paused_meanwhile() -> None:
    assert decide(RUNNING, TrainerExit(0, RESULT), FRESH, 40) == Succeed(RESULT)
    assert decide(JobStatus.PAUSED, TrainerExit(0, RESULT), FRESH, 40) == Succeed(RESULT)
    assert decide(JobStatus.CANCELLED, TrainerExit(0, RESULT), FRESH, 40) == Leave()


def test_an_error_the_trainer_reports_fails_the_job_and_is_not_retried() -> None:
    oom = ErrorEvent(code="out_of_memory", message="Training ran out of memory", param=None)
    assert decide(RUNNING, TrainerExit(1, oom), FRESH, 40) == FailJob(
        "out_of_memory", "Training ran out of memory"
    )


def test_a_killed_trainer_is_retried_from_its_checkpoint_and_says_so() -> None:
    verdict = decide(RUNNING, TrainerExit(-9, None), FRESH, 40)
    assert verdict == Requeue(
        "The trainer stopped unexpectedly (signal 9); retrying from step 40, attempt 2 of 3", retry=True
    )
    second = decide(RUNNING, TrainerExit(-9, None), RetryBudget(used=1, limit=2), None)
    assert isinstance(second, Requeue) and second.message.endswith("retrying from the start, attempt 3 of 3")


def test_a_trainer_that_keeps_dying_fails_the_job_after_the_retries() -> None:
    verdict = decide(RUNNING, TrainerExit(-9, None), RetryBudget(used=2, limit=2), 40)
    assert isinstance(verdict, FailJob) and verdict.code == "training_failed"
    assert "signal 9" in verdict.message and "3 times" in verdict.message
    no_retries = decide(RUNNING, TrainerExit(137, None), RetryBudget(used=0, limit=0), 40)
    assert isinstance(no_retries, FailJob) and "(status 137), once" in no_retries.message


@pytest.mark.parametrize("ended", [TrainerExit(0, None), TrainerExit(None, None), TrainerExit(-11, None)])
def test_a_trainer_that_ends_without_an_outcome_counts_as_died(ended: TrainerExit) -> None:
    verdict = decide(RUNNING, ended, FRESH, 40)
    assert isinstance(verdict, Requeue) and verdict.retry


def test_a_result_with_a_failing_exit_status_is_not_trusted() -> None:
    verdict = decide(RUNNING, TrainerExit(-14, RESULT), FRESH, 40)
    assert isinstance(verdict, Requeue) and "signal 14" in verdict.message


def test_a_trainer_stopped_by_someone_else_continues_without_using_a_retry() -> None:
    stopped = StoppedEvent(step=40, checkpoint="/srv/jobs/j/output/checkpoints/checkpoint-40")
    verdict = decide(RUNNING, TrainerExit(0, stopped), FRESH, 40)
    assert verdict == Requeue("The trainer was stopped; the job continues from step 40", retry=False)


@pytest.mark.parametrize("status", [JobStatus.PAUSED, JobStatus.CANCELLED, JobStatus.FAILED])
def test_a_job_paused_or_cancelled_meanwhile_keeps_the_state_its_user_gave_it(status: JobStatus) -> None:
    assert decide(status, TrainerExit(-9, None), FRESH, 40) == Leave()
    assert decide(status, TrainerExit(0, StoppedEvent(step=4, checkpoint=None)), FRESH, 4) == Leave()


def test_nothing_changes_while_the_gateway_shuts_down() -> None:
    # Its trainers are stopped on purpose; the next gateway continues their jobs.
    assert decide(RUNNING, TrainerExit(0, StoppedEvent(step=4, checkpoint=None)), FRESH, 4, True) == Leave()
    assert decide(RUNNING, TrainerExit(-9, None), FRESH, 4, shutting_down=True) == Leave()


def test_no_verdict_message_shows_a_server_path() -> None:
    for ended in (
        TrainerExit(-9, None),
        TrainerExit(0, StoppedEvent(step=4, checkpoint="/srv/x/checkpoint-4")),
    ):
        for budget in (FRESH, RetryBudget(2, 2)):
            verdict = decide(RUNNING, ended, budget, 4)
            assert isinstance(verdict, Requeue | FailJob) and "/srv" not in verdict.message
