import pytest

from service.jobs.states import TERMINAL, JobStatus, can_transition, sources_of

S = JobStatus


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (S.VALIDATING_FILES, S.QUEUED),
        (S.VALIDATING_FILES, S.FAILED),
        (S.QUEUED, S.RUNNING),
        (S.RUNNING, S.SUCCEEDED),
        (S.RUNNING, S.FAILED),
        (S.RUNNING, S.CANCELLED),
        (S.QUEUED, S.CANCELLED),
        (S.VALIDATING_FILES, S.CANCELLED),
        (S.RUNNING, S.PAUSED),
        (S.PAUSED, S.QUEUED),
        (S.PAUSED, S.CANCELLED),
        (S.RUNNING, S.QUEUED),
    ],
)
def test_allowed_transitions(source: JobStatus, target: JobStatus) -> None:
    assert can_transition(source, target)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (S.VALIDATING_FILES, S.RUNNING),
        (S.VALIDATING_FILES, S.SUCCEEDED),
        (S.QUEUED, S.SUCCEEDED),
        (S.QUEUED, S.PAUSED),
        (S.PAUSED, S.RUNNING),
        (S.PAUSED, S.FAILED),
        (S.SUCCEEDED, S.CANCELLED),
        (S.CANCELLED, S.SUCCEEDED),
        (S.FAILED, S.RUNNING),
    ],
)
def test_forbidden_transitions(source: JobStatus, target: JobStatus) -> None:
    assert not can_transition(source, target)


def test_terminal_states_have_no_way_out() -> None:
    for terminal in TERMINAL:
        assert terminal.is_terminal
        assert not any(can_transition(terminal, target) for target in JobStatus)


def test_sources_of_cancelled_are_the_non_terminal_states() -> None:
    assert sources_of(S.CANCELLED) == {S.VALIDATING_FILES, S.QUEUED, S.RUNNING, S.PAUSED}
