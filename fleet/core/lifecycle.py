"""State machines of moves and jobs as pure functions: allowed transitions and outcomes."""

from __future__ import annotations

from collections.abc import Iterable

from fleet.core.errors import InvalidTransition
from fleet.core.models import JobState, MoveState

MOVE_TRANSITIONS: dict[MoveState, frozenset[MoveState]] = {
    MoveState.PENDING: frozenset({MoveState.CLAIMED, MoveState.CANCELLED, MoveState.FAILED}),
    MoveState.CLAIMED: frozenset(
        {MoveState.MIGRATING, MoveState.FAILED, MoveState.CANCELLED, MoveState.PENDING}
    ),
    MoveState.MIGRATING: frozenset(
        {MoveState.VERIFYING, MoveState.FAILED, MoveState.SUCCEEDED, MoveState.PENDING,
         MoveState.CANCELLED}
    ),
    MoveState.VERIFYING: frozenset({MoveState.SUCCEEDED, MoveState.FAILED}),
    MoveState.SUCCEEDED: frozenset(),
    MoveState.FAILED: frozenset(),
    MoveState.CANCELLED: frozenset(),
}
"""Allowed move transitions. ``-> PENDING`` is a re-plan to another destination."""

ACTIVE_MOVE_STATES = frozenset({MoveState.CLAIMED, MoveState.MIGRATING, MoveState.VERIFYING})


def can_move(current: str, target: str) -> bool:
    """Whether a move in ``current`` may go to ``target``."""
    return MoveState(target) in MOVE_TRANSITIONS[MoveState(current)]


def check_move(current: str, target: str) -> None:
    """Raise ``InvalidTransition`` unless ``current -> target`` is allowed."""
    if not can_move(current, target):
        raise InvalidTransition(f"move cannot go from {current} to {target}")


def job_outcome(move_states: Iterable[str], cancelled: bool = False) -> JobState:
    """The job state implied by its moves' states.

    Running while any move is not terminal; then cancelled if the operator cancelled,
    failed if any move failed, succeeded otherwise.
    """
    states = [MoveState(s) for s in move_states]
    if any(s not in (MoveState.SUCCEEDED, MoveState.FAILED, MoveState.CANCELLED) for s in states):
        return JobState.RUNNING
    if cancelled:
        return JobState.CANCELLED
    if any(s is MoveState.FAILED for s in states):
        return JobState.FAILED
    if states and all(s is MoveState.CANCELLED for s in states):
        return JobState.CANCELLED
    return JobState.SUCCEEDED
