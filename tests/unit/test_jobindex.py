"""The per-job index of unfinished moves always equals what the moves themselves say."""

from __future__ import annotations

import random

from fleet.core.models import Job, JobKind, Move, MoveState
from fleet.store import Store
from fleet.store.jobindex import is_waiting


def _truth(store: Store, job: Job) -> tuple[list[str], set[str]]:
    """Waiting move ids in plan order (re-planned ones first), and flying move ids."""
    job = store.get_job(job.id)
    moves = store.job_moves(job)
    waiting = [m.id for m in moves if is_waiting(m)]
    flying = {m.id for m in moves if not m.terminal and not is_waiting(m)}
    return waiting, flying


def _index(store: Store, job: Job) -> tuple[list[str], set[str]]:
    job = store.get_job(job.id)
    waiting = [m.id for m in store.waiting_moves(job, 1000)]
    flying = {m.id for m in store.flying_moves(job)}
    assert store.open_moves(job) == (len(flying), len(waiting))
    return waiting, flying


def _act(store: Store, rng: random.Random, job: Job) -> None:
    moves = store.job_moves(store.get_job(job.id))
    move = rng.choice(moves)
    op = rng.choices(range(5), weights=[3, 3, 6, 1, 1])[0]
    if op == 0:
        store.set_move(move.id, MoveState.PENDING.value, destination=rng.choice(["h2", "h3"]))
    elif op == 1:
        store.claim_move(move.id, "runner", lease_s=30)
    elif op == 2:
        if not move.token:
            return
        nxt = {"claimed": ["migrating", "failed", "pending"],
               "migrating": ["verifying", "succeeded", "pending", "failed"],
               "verifying": ["succeeded", "failed"]}.get(move.state, ["failed"])
        store.advance_move(move.id, move.token, rng.choice(nxt))
    elif op == 3:
        store.set_move(move.id, rng.choice(["cancelled", "failed"]))
    else:
        store.add_moves(job.id, [Move("", "", f"x{rng.randrange(10_000)}", "h1")])


def test_every_move_write_keeps_the_index(store: Store) -> None:
    rng = random.Random(3)
    job = store.create_move_job(JobKind.DRAIN, "t", [Move("", "", f"v{i}", "h1")
                                                     for i in range(6)])
    assert _index(store, job) == _truth(store, job)
    seen = set()
    for _ in range(500):
        _act(store, rng, job)
        waiting, flying = _index(store, job)
        truth_waiting, truth_flying = _truth(store, job)
        assert flying == truth_flying
        assert sorted(waiting) == sorted(truth_waiting)
        seen |= {m.state for m in store.job_moves(store.get_job(job.id))}
        seen |= {"placed"} if any(m.destination for m in store.flying_moves(job)) else set()
    assert {"pending", "placed", "claimed", "migrating", "verifying", "succeeded",
            "cancelled"} <= seen


def test_waiting_moves_come_in_plan_order_and_a_replanned_one_first(store: Store) -> None:
    job = store.create_move_job(JobKind.DRAIN, "t", [Move("", "", f"v{i}", "h1")
                                                     for i in range(4)])
    added = store.add_moves(job.id, [Move("", "", "late", "h1")])
    job = store.get_job(job.id)
    order = [m.vm for m in store.waiting_moves(job, 10)]
    assert order == ["v0", "v1", "v2", "v3", "late"]
    third = store.waiting_moves(job, 10)[2]
    store.set_move(third.id, MoveState.PENDING.value, destination="h2")
    assert [m.vm for m in store.waiting_moves(job, 2)] == ["v0", "v1"]
    store.set_move(third.id, MoveState.PENDING.value, destination="")  # placed again later
    assert next(m.vm for m in store.waiting_moves(job, 10)) == "v2"
    assert added[0].id in {m.id for m in store.waiting_moves(job, 10)}


def test_a_job_from_before_the_index_is_indexed_on_first_use(store: Store) -> None:
    job = store.create_move_job(JobKind.DRAIN, "t", [Move("", "", f"v{i}", "h1")
                                                     for i in range(3)])
    first = store.job_moves(job)[0]
    store.set_move(first.id, MoveState.PENDING.value, destination="h2")
    for key in store.keys.job_keys(job.id)[2:]:  # waiting, flying, indexed: as before
        store.r.delete(key)
    assert store.open_moves(job) == (1, 2)
    assert [m.vm for m in store.waiting_moves(job, 5)] == ["v1", "v2"]
