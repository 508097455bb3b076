"""Retention: finished jobs go with their moves and events; running ones stay."""

from __future__ import annotations

from fleet.core.models import Job, JobKind, Move, MoveState
from fleet.store import Store


def _job(store: Store, vm: str, at: float, end: str | None) -> Job:
    store.clock = lambda: at
    job = store.create_move_job(JobKind.MIGRATE, "t", [Move("", "", vm, "h1", target="h2")])
    if end is not None:
        for move in store.job_moves(job):
            store.set_move(move.id, MoveState.CANCELLED.value)
            store.release_vm(vm, move.id)

        def finish(current: Job) -> Job:
            current.state, current.finished_at = end, at + 10
            return current

        store.update_job(job.id, finish)
    return store.get_job(job.id)


def _keys_of(store: Store, job: Job) -> list[str]:
    keys = [store.keys.job(job.id), store.keys.job_events(job.id)]
    return [k for k in keys + [store.keys.move(m) for m in job.moves] if store.r.exists(k)]


def test_jobs_that_ended_before_the_cutoff_are_deleted_whole(store: Store) -> None:
    old_done = _job(store, "a", 1000.0, "succeeded")
    old_running = _job(store, "b", 1000.0, None)
    late_end = _job(store, "c", 1995.0, "failed")  # ended at 2005, after the cutoff
    new = _job(store, "d", 3000.0, "succeeded")
    assert len(_keys_of(store, old_done)) == 3  # job, events, one move
    assert store.prune_jobs(before=2000.0) == 1
    assert _keys_of(store, old_done) == []
    assert store.find_job(old_done.id) is None
    for kept in (old_running, late_end, new):
        assert store.find_job(kept.id) is not None and store.job_moves(kept)
    found, more = store.find_jobs()
    assert {j.id for j in found} == {old_running.id, late_end.id, new.id} and more == 0
    assert store.prune_jobs(before=2000.0) == 0  # nothing left to prune there


def test_a_dangling_job_id_is_dropped_from_the_index(store: Store) -> None:
    job = _job(store, "a", 1000.0, "succeeded")
    store.r.delete(store.keys.job(job.id))
    assert store.prune_jobs(before=500.0) == 0  # younger than the cutoff: left alone
    assert store.prune_jobs(before=2000.0) == 1
    assert store.r.zcard(store.keys.jobs) == 0


def test_audit_events_older_than_the_cutoff_are_trimmed(store: Store) -> None:
    for i in range(5):
        store.r.xadd(store.keys.audit, {"kind": "k", "job": "", "at": "0", "data": "{}"},
                     id=f"{1000 + i}-0")
    store.r.xadd(store.keys.audit, {"kind": "k", "job": "", "at": "0", "data": "{}"},
                 id="9000-0")
    store.journal.trim_audit(before=5.0)  # 5,000 ms
    assert [eid for eid, _ in store.journal.audit()] == ["9000-0"]
