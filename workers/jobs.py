"""Job orchestration on the controller: place moves, dispatch them, finish jobs.

``start``, ``advance`` and ``cancel`` are idempotent: they may run twice for the same job
(Celery can deliver twice) and hold a short per-job lock so two never interleave.
In-flight moves are those dispatched (pending with a destination) or claimed by a
runner; a job never has more in flight than its concurrency.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fleet.core.allocation import limits
from fleet.core.lifecycle import job_outcome
from fleet.core.models import VM, Job, JobKind, JobState, Move, MoveState
from fleet.core.placement import pick_host
from fleet.core.planmodel import PlacementConfig
from fleet.store import Store
from workers.drain import catch_up, needs_plan
from workers.recovery import settle_interrupted

log = logging.getLogger(__name__)
Dispatch = Callable[[Move], None]
MAX_REPLANS = 3


@dataclass
class JobService:
    """Drives jobs forward from the controller."""

    store: Store
    dispatch: Dispatch
    config: PlacementConfig = field(default_factory=PlacementConfig)
    clock: Callable[[], float] = time.time
    planner: Callable[[Job], None] | None = None
    """Plans a drain job that has no moves yet (the controller's kept state)."""
    placer: Callable[[VM, list[str]], str | None] | None = None
    """Places one VM on the kept state, excluding hosts (else the store is read whole)."""

    def start(self, job_id: str) -> Job:
        def begin(job: Job) -> Job | None:
            if job.state != JobState.PENDING.value:
                return None
            job.state, job.started_at = JobState.RUNNING.value, self.clock()
            return job

        if self.store.update_job(job_id, begin) is not None:
            self.store.emit(job_id, "job.running")
        return self.advance(job_id)

    def cancel(self, job_id: str, by: str) -> Job:
        """No new moves start; running ones are aborted by their runners."""
        if self.store.request_cancel(job_id) is not None:
            self.store.emit(job_id, "job.cancel_requested", by=by)
        return self.advance(job_id)

    def advance(self, job_id: str) -> Job:
        """Advance the job now, or leave it to the process advancing it already
        (``Store.run_when_asked``): a drain's many move ends never queue a controller's
        threads behind one job's lock."""
        keys = self.store.keys
        job = self.store.run_when_asked(f"job:{job_id}", keys.job_asked(job_id),
                                        lambda: self._advance_locked(job_id),
                                        sent=keys.job_sent(job_id))
        return job or self.store.get_job(job_id)

    def _advance_locked(self, job_id: str) -> Job:
        job = self.store.get_job(job_id)
        if job.terminal or job.kind == JobKind.FAILOVER.value:
            return job  # failover jobs belong to the monitor
        if job.state == JobState.PENDING.value and not job.cancel_requested:
            return job
        if needs_plan(job) and not job.cancel_requested:
            if self.planner is None:
                return job  # only a controller with a planner may plan it
            self.planner(job)
            job = self.store.get_job(job_id)
        return self._step(job)

    def _step(self, job: Job) -> Job:
        """Drop what a cancel stopped, or launch what the concurrency allows; then end
        the job if nothing is left to do. Reads the job's index, not all its moves."""
        if job.cancel_requested:
            for move in self.store.job_moves(job):
                if move.state == MoveState.PENDING.value:
                    self._drop(move, MoveState.CANCELLED.value, "cancelled before it began")
            return self._maybe_finish(job)
        flying, waits = self.store.open_moves(job)
        if job.kind == JobKind.DRAIN.value and flying + waits == 0:
            if catch_up(self.store, job, self.store.job_moves(job)) is None:
                return job  # a VM is still on its way to the drained host
            job = self.store.get_job(job.id)
        self._launch_up_to(job, job.concurrency - flying)
        return self._maybe_finish(job)

    def _launch_up_to(self, job: Job, budget: int) -> None:
        """Launch waiting moves in plan order until ``budget`` of them fly."""
        tried: set[str] = set()
        while budget > 0:
            batch = [m for m in self.store.waiting_moves(job, budget + len(tried))
                     if m.id not in tried]
            if not batch:
                return
            for move in batch:
                tried.add(move.id)
                budget -= self._launch(move)
                if budget <= 0:
                    return

    def _drop(self, move: Move, state: str, why: str) -> None:
        if self.store.set_move(move.id, state, error=why) is not None:
            self.store.release(move.destination, move.id)
            self.store.release_vm(move.vm, move.id)

    def _launch(self, move: Move) -> int:
        """Place, reserve and dispatch one move; returns 1 if it is now in flight."""
        vm = self.store.get_vm(move.vm)
        dest = self._reserve(move, vm)
        if dest is None:
            why = move.error or "no host has room for it"
            self._drop(move, MoveState.FAILED.value, f"no destination for {vm.name}: {why}")
            return 0
        placed = self.store.set_move(move.id, MoveState.PENDING.value, destination=dest,
                                     dispatched_at=self.clock())
        if placed is None:
            self.store.release(dest, move.id)
            return 0
        self.store.emit(move.job_id, "move.dispatched", move=move.id, vm=move.vm,
                        source=move.source, destination=dest)
        self.dispatch(placed)
        return 1

    def _reserve(self, move: Move, vm: VM) -> str | None:
        """A destination with the VM's capacity reserved on it atomically, or None."""
        tried: list[str] = []
        for _ in range(3):
            dest = self._choose(move, vm, tried)
            if dest is None:
                return None
            host = self.store.find_host(dest)
            if host is not None and self.store.try_reserve(
                    dest, move.id, vm.vcpus, vm.memory_mib, limits(host, self.config)):
                return dest
            if move.target:
                return None
            tried.append(dest)
        return None

    def _choose(self, move: Move, vm: VM, tried: list[str]) -> str | None:
        """The operator's target, else the plan's choice, else placement's."""
        banned = [*move.excluded, *tried]
        if move.target:
            return move.target if move.target not in banned else None
        if len(move.excluded) >= MAX_REPLANS:
            return None
        if move.planned and move.planned not in banned:
            return move.planned
        if self.placer is not None:
            return self.placer(vm, banned)
        vms = self.store.list_vms()
        return pick_host(vm, self.store.list_hosts(), self.store.usage(vms), exclude=banned,
                         vms=vms, config=self.config)

    def redeliver(self, job_id: str, older_than_s: float) -> list[Move]:
        """Dispatch again moves whose message seems lost (claims make this harmless)."""
        cutoff = self.clock() - older_than_s
        job = self.store.get_job(job_id)
        again = [m for m in self.store.flying_moves(job)
                 if m.state == MoveState.PENDING.value and m.destination
                 and m.dispatched_at < cutoff]
        for move in again:
            self.redispatch(move)
        return again

    def redispatch(self, move: Move) -> Move | None:
        """Send ``move`` (as read, pending) again, if it is still pending and unclaimed."""
        placed = self.store.set_move(move.id, MoveState.PENDING.value,
                                     dispatched_at=self.clock())
        if placed is not None:
            self.store.emit(move.job_id, "move.redispatched", move=move.id, vm=move.vm)
            self.dispatch(placed)
        return placed

    def sweep(self, redeliver_after_s: float, pending_after_s: float = 30.0) -> None:
        """The safety net: start jobs whose start message was lost, advance every running
        job, re-dispatch moves whose message was lost, free orphaned VM locks and settle
        failover restarts whose holder vanished."""
        cutoff = self.clock() - pending_after_s
        for job in self.store.list_jobs(limit=1000):
            if job.state == JobState.PENDING.value and job.created_at < cutoff:
                self.store.emit(job.id, "job.start_recovered")
                self.start(job.id)
            elif job.state == JobState.RUNNING.value:
                self.redeliver(job.id, redeliver_after_s)
                self.advance(job.id)
        self.store.sweep_locks()
        settle_interrupted(self.store)

    def _maybe_finish(self, job: Job) -> Job:
        if sum(self.store.open_moves(job)):
            return job
        moves = self.store.job_moves(job)  # once, at the job's end
        outcome = job_outcome([m.state for m in moves], cancelled=job.cancel_requested)
        if outcome is JobState.RUNNING:
            return job
        summary = {
            "moved": [m.vm for m in moves if m.state == MoveState.SUCCEEDED.value],
            "failed": [{"vm": m.vm, "error": m.error} for m in moves
                       if m.state == MoveState.FAILED.value],
            "cancelled": [m.vm for m in moves if m.state == MoveState.CANCELLED.value],
            "duration_s": round(self.clock() - (job.started_at or job.created_at), 2),
        }

        def finish(current: Job) -> Job | None:
            if current.terminal:
                return None
            current.state, current.summary = outcome.value, {**current.summary, **summary}
            current.finished_at = self.clock()
            return current

        done = self.store.update_job(job.id, finish)
        if done is None:
            return self.store.get_job(job.id)
        self.store.emit(job.id, f"job.{done.state}", **summary)
        return done
