"""Jobs, their moves and the VM locks, written together or not at all.

A job, its moves and the lock of every VM it moves are one Redis transaction (WATCH on
the locks, then MULTI): a crash can never leave a lock without its move or a move
without its job. A lock names its owner — a move id, or
``restart/<source>/<target>/<deadline>`` for a failover restart — and ``sweep_locks``
frees locks whose move ended or never existed (restart locks are settled by
recovery). Mixed into ``Store``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from redis.lock import Lock

from fleet.core.errors import Conflict
from fleet.core.models import VM, Host, Job, JobKind, Move, MoveState
from fleet.store.jobindex import queue_new
from fleet.store.keys import Keys
from fleet.store.records import cas, dump, load

T = TypeVar("T")

RESTART_LOCK = "restart/"
ADVANCE_SENT_TTL_S = 30.0
_Stage = Callable[[Any], Callable[[Any], None]]


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def restart_owner(source: str, target: str) -> str:
    """The lock owner of a failover restart of a VM from ``source`` on ``target``."""
    return f"{RESTART_LOCK}{source}/{target}"


@dataclass(frozen=True)
class MoveFacts:
    """What a runner reads before it migrates, in one round trip (``move_facts``)."""

    vm: VM | None
    destination: Host | None
    destination_beats: bool
    cancelled: bool


class JobRecords:
    """Atomic job creation and VM locks; needs ``r``, ``keys`` and ``clock`` from ``Store``."""

    r: Any
    keys: Keys
    clock: Callable[[], float]
    ids: Callable[[], str] = staticmethod(new_id)
    """Makes job and move ids (random; a deterministic one in tests that replay)."""

    def emit(self, job_id: str, kind: str, /, **fields: Any) -> None:
        raise NotImplementedError

    def lock(self, name: str, timeout_s: float) -> Lock:
        raise NotImplementedError

    def want_advance(self, job_id: str, sent_ttl_s: float = ADVANCE_SENT_TTL_S) -> bool:
        """Ask for an advance of the job; True if the caller should send its message
        (no other is on its way). One sent message serves every ask made before its
        task runs (``run_when_asked`` with ``sent``); a lost one is covered by the
        controller's sweep, and its mark expires after ``sent_ttl_s``."""
        with self.r.pipeline() as pipe:
            pipe.set(self.keys.job_asked(job_id), "1")
            pipe.set(self.keys.job_sent(job_id), "1", nx=True, px=round(sent_ttl_s * 1000))
            return bool(pipe.execute()[1])

    def run_when_asked(self, lock: str, flag: str, run: Callable[[], T],
                       sent: str | None = None) -> T | None:
        """Ask for ``run`` (set ``flag``) and run it under ``lock`` as long as it is asked
        for; None at once if another holds the lock: the holder looks at the flag again
        after letting the lock go, so nothing asked for is lost and nobody waits.
        ``sent`` (the mark of a message on its way, ``want_advance``) is cleared first:
        an ask after that sends a message of its own or is seen by this loop."""
        with self.r.pipeline() as pipe:
            if sent is not None:
                pipe.delete(sent)
            pipe.set(flag, "1")
            pipe.execute()
        done: T | None = None
        while self.r.exists(flag):
            held = self.lock(lock, timeout_s=30)
            if not held.acquire(blocking=False):
                break
            try:
                self.r.delete(flag)
                done = run()
            finally:
                held.release()
        return done

    def request_cancel(self, job_id: str) -> Job | None:
        """Mark the job cancelled: its record and the flag its runners poll
        (``cancel_asked``), in one transaction; None if it is over or marked already."""
        def flag(job: Job) -> Job | None:
            if job.terminal or job.cancel_requested:
                return None
            job.cancel_requested = True
            return job

        return cas(self.r, self.keys.job(job_id), Job, flag,
                   extra=lambda pipe, _: pipe.set(self.keys.job_cancel(job_id), "1"))

    def cancel_asked(self, job_id: str) -> bool:
        return bool(self.r.exists(self.keys.job_cancel(job_id)))

    def move_facts(self, move: Move) -> MoveFacts:
        """The move's VM record, its destination's record and heartbeat, and whether its
        job is cancelled: one MGET."""
        k = self.keys
        vm, dest, beat, cancel = self.r.mget(k.vm(move.vm), k.host(move.destination),
                                             k.heartbeat(move.destination),
                                             k.job_cancel(move.job_id))
        return MoveFacts(load(VM, vm), load(Host, dest), beat is not None, cancel is not None)

    def find_move(self, move_id: str) -> Move | None:
        return load(Move, self.r.get(self.keys.move(move_id)))

    def find_job(self, job_id: str) -> Job | None:
        return load(Job, self.r.get(self.keys.job(job_id)))

    def create_move_job(
        self, kind: JobKind, requested_by: str, moves: Iterable[Move], target: str = "",
        concurrency: int = 1,
    ) -> Job:
        """Create a job, its moves and their VM locks in one transaction.

        If a VM already belongs to another owner, nothing is written and the
        ``Conflict`` names the job that owns it.
        """
        now = self.clock()
        job = Job(id=self.ids(), kind=kind.value, requested_by=requested_by, target=target,
                  concurrency=concurrency, created_at=now)
        move_list = list(moves)
        for move in move_list:
            move.id, move.job_id, move.created_at = self.ids(), job.id, now
        job.moves = [m.id for m in move_list]
        busy = self._write_atomically(
            move_list, [], lambda _pipe: lambda pipe: self._queue_job(pipe, job, now, move_list))
        if busy:
            raise Conflict(f"VM {busy[0]} is already moving in job {self._owner(busy[0])}")
        self.emit(job.id, "job.created", job_kind=job.kind, by=requested_by, target=target,
                  vms=[m.vm for m in move_list])
        return job

    def _queue_job(self, pipe: Any, job: Job, now: float, moves: list[Move]) -> None:
        pipe.set(self.keys.job(job.id), dump(job))
        queue_new(pipe, self.keys, job.id, moves, 0)
        pipe.zadd(self.keys.jobs, {job.id: now})

    def _write_atomically(self, moves: list[Move], watched: list[str], more: _Stage,
                          partial: bool = False) -> list[str]:
        """Lock every move's VM, write the moves and what ``more`` queues in one
        transaction; returns the VMs already locked by others. Unless ``partial``, any
        such VM means nothing is written; with ``partial``, their moves are written
        failed and unlocked. ``more(pipe)`` may read ``watched`` keys before the
        transaction and returns what to queue in it."""
        locks = [self.keys.vm_lock(m.vm) for m in moves]
        for _ in range(50):
            with self.r.pipeline() as pipe:
                try:
                    if locks or watched:
                        pipe.watch(*locks, *watched)
                    owners = pipe.mget(locks) if locks else []
                    write = more(pipe)
                    busy = [m.vm for m, owner in zip(moves, owners, strict=True) if owner]
                    if busy and not partial:
                        pipe.unwatch()
                        return busy
                    pipe.multi()
                    self._queue_moves(pipe, moves, set(busy))
                    write(pipe)
                    pipe.execute()
                    return busy
                except redis.WatchError:
                    continue
        raise Conflict("too much contention creating a job")

    def _queue_moves(self, pipe: Any, moves: list[Move], busy: set[str]) -> None:
        for move in moves:
            if move.vm in busy:
                move.state, move.finished_at = MoveState.FAILED.value, self.clock()
                move.error = f"{move.vm} is already moving in another job"
            elif not move.terminal:
                pipe.set(self.keys.vm_lock(move.vm), move.id)
                pipe.sadd(self.keys.vm_locks, move.vm)
            pipe.set(self.keys.move(move.id), dump(move))

    def add_moves(self, job_id: str, moves: Iterable[Move]) -> list[Move]:
        """Add moves to an existing job in one transaction with their locks; a VM that
        another job is moving gets a failed move saying so (nothing is locked for it)."""
        now, added = self.clock(), list(moves)
        for move in added:
            move.id, move.job_id, move.created_at = self.ids(), job_id, now
        job_key = self.keys.job(job_id)

        def extend(watching: Any) -> Callable[[Any], None]:
            job = load(Job, watching.get(job_key))
            if job is None:
                raise Conflict(f"job {job_id} vanished while adding moves")
            first = len(job.moves)
            job.moves = [*job.moves, *(m.id for m in added)]

            def write(pipe: Any) -> None:
                pipe.set(job_key, dump(job))
                queue_new(pipe, self.keys, job_id, added, first)

            return write

        self._write_atomically(added, [job_key], extend, partial=True)
        return added

    def _owner(self, vm: str) -> str:
        return self.owning_job(vm) or self.lock_owner(vm) or "?"

    def lock_owner(self, vm: str) -> str | None:
        """Who holds ``vm``'s lock: a move id, a restart, or None."""
        owner = self.r.get(self.keys.vm_lock(vm))
        return None if owner is None else str(owner)

    def owning_job(self, vm: str) -> str | None:
        """The job whose move holds ``vm``, if any."""
        owner = self.lock_owner(vm)
        move = self.find_move(owner) if owner and not owner.startswith(RESTART_LOCK) else None
        return None if move is None else move.job_id

    def lock_vm(self, vm: str, owner: str, ttl_s: float = 0.0) -> bool:
        """Take ``vm``'s lock for ``owner`` (SET NX), for at most ``ttl_s`` if given."""
        expiry = {"px": int(ttl_s * 1000)} if ttl_s > 0 else {}
        with self.r.pipeline() as pipe:
            pipe.set(self.keys.vm_lock(vm), owner, nx=True, **expiry)
            pipe.sadd(self.keys.vm_locks, vm)
            taken, _ = pipe.execute()
        return bool(taken)

    def release_vm(self, vm: str, owner: str) -> bool:
        """Drop the VM lock if ``owner`` still holds it (compare-and-delete)."""
        key = self.keys.vm_lock(vm)
        with self.r.pipeline() as pipe:
            try:
                pipe.watch(key)
                if pipe.get(key) != owner:
                    pipe.unwatch()
                    return False
                pipe.multi()
                pipe.delete(key)
                pipe.srem(self.keys.vm_locks, vm)
                pipe.execute()
                return True
            except redis.WatchError:
                return False

    def sweep_locks(self) -> list[str]:
        """Free every VM lock whose owner ended or never existed; returns those VMs.

        A move owner counts as ended once its move is terminal or gone, or its job is
        gone; a restart lock is settled by ``workers.recovery.settle_interrupted``."""
        freed = []
        for vm in sorted(self.r.smembers(self.keys.vm_locks)):
            owner = self.lock_owner(vm)
            if owner is None:
                self.r.srem(self.keys.vm_locks, vm)
                continue
            if owner.startswith(RESTART_LOCK) or self._owner_lives(owner):
                continue
            if self.release_vm(vm, owner):
                freed.append(vm)
                self.emit("", "vm.lock_freed", vm=vm, owner=owner)
        return freed

    def prune_jobs(self, before: float, batch: int = 500) -> int:
        """Delete jobs that ended before ``before`` with their moves and events (the
        retention period); jobs still running are kept whatever their age. At most
        ``batch`` of the oldest jobs are looked at per call; returns how many went."""
        ids = self.r.zrangebyscore(self.keys.jobs, "-inf", before, start=0, num=batch)
        raws = self.r.mget([self.keys.job(i) for i in ids]) if ids else []
        gone = 0
        with self.r.pipeline(transaction=False) as pipe:
            for job_id, job in zip(ids, (load(Job, raw) for raw in raws), strict=True):
                if job is not None and not (job.terminal and job.finished_at < before):
                    continue
                moves = [self.keys.move(m) for m in job.moves] if job is not None else []
                pipe.delete(*self.keys.job_keys(job_id), *moves)
                pipe.zrem(self.keys.jobs, job_id)
                gone += 1
            pipe.execute()
        return gone

    def _owner_lives(self, move_id: str) -> bool:
        move = self.find_move(move_id)
        return move is not None and not move.terminal and self.find_job(move.job_id) is not None
