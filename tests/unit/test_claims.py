"""Claims: a move is taken by exactly one runner, and only its token may advance it."""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.core.errors import Conflict
from fleet.core.models import JobKind, Move, MoveState
from fleet.store import Store


def _job(store: Store, vm: str = "vm1") -> Move:
    job = store.create_move_job(JobKind.MIGRATE, "test", [Move("", "", vm, "h1")])
    move = store.job_moves(job)[0]
    placed = store.set_move(move.id, "pending", destination="h2")
    assert placed is not None
    return placed


def race(store: Store, move_id: str, claimers: int) -> list[Move]:
    """``claimers`` threads claim the move at once; returns the winners."""
    barrier = threading.Barrier(claimers)
    won: list[Move] = []

    def claim(i: int) -> None:
        barrier.wait()
        got = store.claim_move(move_id, f"runner-{i}", lease_s=30)
        if got is not None:
            won.append(got)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(claimers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won


@settings(max_examples=15, deadline=None)
@given(claimers=st.integers(min_value=2, max_value=12))
def test_concurrent_claimers_have_exactly_one_winner(claimers: int) -> None:
    import fakeredis

    from fleet.store import Keys

    store = Store(fakeredis.FakeRedis(decode_responses=True), Keys("p"))
    move = _job(store)
    winners = race(store, move.id, claimers)
    assert len(winners) == 1
    final = store.get_move(move.id)
    assert final.state == MoveState.CLAIMED.value
    assert final.runner == winners[0].runner and final.token == winners[0].token
    assert final.attempt == 1


def test_only_the_token_holder_advances(store: Store) -> None:
    move = _job(store)
    mine = store.claim_move(move.id, "a", lease_s=30)
    assert mine is not None
    assert store.claim_move(move.id, "b", lease_s=30) is None
    assert store.advance_move(move.id, "wrong-token", "migrating") is None
    assert store.get_move(move.id).state == "claimed"
    assert store.advance_move(move.id, mine.token, "migrating") is not None
    assert store.advance_move(move.id, mine.token, "claimed") is None  # no way back


def test_take_over_waits_for_the_lease(store: Store) -> None:
    now = [1000.0]
    store.clock = lambda: now[0]
    move = _job(store)
    mine = store.claim_move(move.id, "a", lease_s=10)
    assert mine is not None
    assert store.take_over(move.id, "reconciler", lease_s=10) is None
    now[0] += 11
    taken = store.take_over(move.id, "reconciler", lease_s=10)
    assert taken is not None and taken.token != mine.token
    assert store.advance_move(move.id, mine.token, "migrating") is None


def test_one_unfinished_move_per_vm(store: Store) -> None:
    first = _job(store)
    try:
        _job(store)
    except Conflict as exc:
        assert first.job_id in str(exc)
    else:
        raise AssertionError("a second move of the same VM was accepted")
    store.set_move(first.id, "failed", error="x")
    store.release_vm("vm1", first.id)
    assert _job(store).id != first.id


def test_finished_moves_leave_the_active_set(store: Store) -> None:
    move = _job(store)
    mine = store.claim_move(move.id, "a", lease_s=30)
    assert mine is not None
    assert [m.id for m in store.active_moves()] == [move.id]
    store.advance_move(move.id, mine.token, "failed", error="boom")
    assert store.active_moves() == []
