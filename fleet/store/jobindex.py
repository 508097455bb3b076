"""Per-job index of unfinished moves, so advancing a job costs the same whatever its size.

Two sorted sets per job: ``waiting`` (pending, not yet placed; scored by plan order, a
re-planned move at the front) and ``flying`` (placed, claimed, migrating, verifying).
Every move write updates them in its own transaction (``queue_index``); a finished move
leaves both. The controller reads how many fly and the next few waiting instead of every
move of the job; only a job's end reads all its moves, once. A job written before the
index existed has no ``indexed`` marker and is indexed from its moves on first use.
"""

from __future__ import annotations

from typing import Any

from fleet.core.models import Job, Move, MoveState
from fleet.store.keys import Keys
from fleet.store.records import load

REPLANNED = 0.0
"""The score of a move that waits again after a failed attempt: it goes first."""


def is_waiting(move: Move) -> bool:
    """Pending and not yet placed: the controller still has to act on it."""
    return move.state == MoveState.PENDING.value and not move.destination


def queue_index(pipe: Any, keys: Keys, move: Move, order: float | None = None) -> None:
    """Queue on ``pipe`` the index change of ``move`` as it is now; ``order`` places a
    new waiting move (a move already waiting keeps its place)."""
    waiting, flying = keys.job_waiting(move.job_id), keys.job_flying(move.job_id)
    if move.terminal:
        pipe.zrem(waiting, move.id)
        pipe.zrem(flying, move.id)
    elif is_waiting(move):
        pipe.zrem(flying, move.id)
        pipe.zadd(waiting, {move.id: REPLANNED if order is None else order}, nx=True)
    else:
        pipe.zrem(waiting, move.id)
        pipe.zadd(flying, {move.id: 0.0})


def queue_new(pipe: Any, keys: Keys, job_id: str, moves: list[Move], first: int) -> None:
    """Index moves just added to job ``job_id`` at plan positions ``first``, ``first+1``…
    and mark the job indexed."""
    for i, move in enumerate(moves):
        queue_index(pipe, keys, move, float(first + i + 1))
    pipe.set(keys.job_indexed(job_id), "1")


class JobIndex:
    """Reading the index; needs ``r``, ``keys`` and ``job_moves`` from ``Store``."""

    r: Any
    keys: Keys

    def job_moves(self, job: Job) -> list[Move]:
        raise NotImplementedError

    def open_moves(self, job: Job) -> tuple[int, int]:
        """How many of the job's moves fly (placed, not finished) and how many wait; a
        job from before the index is indexed first."""
        with self.r.pipeline(transaction=False) as pipe:
            pipe.exists(self.keys.job_indexed(job.id))
            pipe.zcard(self.keys.job_flying(job.id))
            pipe.zcard(self.keys.job_waiting(job.id))
            indexed, flying, waiting = pipe.execute()
        if not indexed:
            self._index(job)
            return self.open_moves(job)
        return int(flying), int(waiting)

    def waiting_moves(self, job: Job, limit: int) -> list[Move]:
        """The first ``limit`` moves of the job still waiting for a destination (the job
        indexed: ``open_moves`` first)."""
        return self._moves(self.r.zrange(self.keys.job_waiting(job.id), 0, limit - 1))

    def flying_moves(self, job: Job) -> list[Move]:
        """The job's moves placed and not finished."""
        self.open_moves(job)  # indexes a job from before the index
        return self._moves(self.r.zrange(self.keys.job_flying(job.id), 0, -1))

    def _moves(self, ids: list[str]) -> list[Move]:
        raws = self.r.mget([self.keys.move(i) for i in ids]) if ids else []
        return [m for m in (load(Move, raw) for raw in raws) if m is not None]

    def _index(self, job: Job) -> None:
        """Index a job written before the index existed (applying twice is harmless: a
        move keeps its place)."""
        moves = {m.id: m for m in self.job_moves(job)}
        with self.r.pipeline(transaction=False) as pipe:
            queue_new(pipe, self.keys, job.id, [moves[i] for i in job.moves if i in moves], 0)
            pipe.execute()
