"""The move and job state machines."""

from __future__ import annotations

import itertools

import pytest

from fleet.core.errors import InvalidTransition
from fleet.core.lifecycle import MOVE_TRANSITIONS, can_move, check_move, job_outcome
from fleet.core.models import JobState, MoveState


def test_terminal_states_are_final() -> None:
    for state in (MoveState.SUCCEEDED, MoveState.FAILED, MoveState.CANCELLED):
        assert not MOVE_TRANSITIONS[state]
        for target in MoveState:
            assert not can_move(state, target)


def test_happy_path_is_allowed() -> None:
    path = ["pending", "claimed", "migrating", "verifying", "succeeded"]
    for current, target in itertools.pairwise(path):
        check_move(current, target)


def test_cannot_skip_the_claim() -> None:
    with pytest.raises(InvalidTransition):
        check_move("pending", "migrating")
    with pytest.raises(InvalidTransition):
        check_move("pending", "succeeded")


@pytest.mark.parametrize(("states", "cancelled", "expected"), [
    (["succeeded", "succeeded"], False, JobState.SUCCEEDED),
    (["succeeded", "migrating"], False, JobState.RUNNING),
    (["succeeded", "failed"], False, JobState.FAILED),
    (["pending"], False, JobState.RUNNING),
    (["cancelled", "succeeded"], True, JobState.CANCELLED),
    (["cancelled"], False, JobState.CANCELLED),
])
def test_job_outcome(states: list[str], cancelled: bool, expected: JobState) -> None:
    assert job_outcome(states, cancelled) is expected
