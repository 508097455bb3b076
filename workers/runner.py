"""The migration runner: claim a move, check, migrate with live progress, verify, commit.

It runs on the source host's agent. The hypervisor call blocks in a thread while this
thread samples job statistics, applies policy, renews the move's lease and publishes
progress. A VM recorded ``stopped`` whose domain is shut off moves by its definition
instead (defined on the destination, undefined here), so a drain empties a host of
stopped VMs too. Transient errors are retried with tenacity; a failing destination sends the
move back to the controller for re-planning; anything else fails the move with a reason.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from fleet.core.errors import FleetError
from fleet.core.hypervisor import (
    STOPPED_DOMAIN,
    DestinationError,
    DomainGone,
    DomainSpec,
    DomainState,
    Hypervisor,
    HypervisorError,
    JobStats,
    MigrationParams,
    MigrationTarget,
    PermanentError,
    TransientError,
)
from fleet.core.models import VM, Host, HostState, Move, MoveState, Progress, VMState
from fleet.core.policy import Decision, PolicyConfig, Verdict, Watch, decide, eta_s, observe
from fleet.core.policy import progress_percent as percent_of
from fleet.core.settlement import Verdict as Where
from fleet.settings import Settings
from fleet.store import Store
from workers.outcomes import (
    MoveFailed,
    Outcome,
    commit,
    conclude,
    settle_failed,
    settle_on_source,
    settler,
)
from workers.sighting import Picture

ABORT_GRACE_S = 60.0
Publish = Callable[[Move, Progress], None]
Locate = Callable[[Host], Hypervisor]


class MoveCancelled(FleetError):
    """The operator cancelled the job; the VM stays on its source."""


class Replan(FleetError):
    """The destination failed; the controller should pick another one."""


class Settled(FleetError):
    """A failed hypervisor call left the VM somewhere other than simply on its source:
    the move ends as the hosts' picture says, not as the error suggests."""

    def __init__(self, picture: Picture) -> None:
        super().__init__(picture.describe())
        self.picture = picture


def policy_config(settings: Settings, overrides: dict[str, object] | None = None,
                  ) -> PolicyConfig:
    cfg = PolicyConfig(timeout_per_gib_s=settings.migration_timeout_per_gib_s,
                       timeout_min_s=settings.migration_timeout_min_s,
                       stall_timeout_s=settings.stall_timeout_s,
                       max_downtime_ms=settings.max_downtime_ms,
                       bandwidth_mib_s=settings.bandwidth_mib_s)
    return cfg.with_overrides(dict(overrides or {}))


def progress_of(stats: JobStats) -> Progress:
    return Progress(
        percent=percent_of(stats.processed_mib, stats.remaining_mib, stats.total_mib),
        processed_mib=round(stats.processed_mib, 1), remaining_mib=round(stats.remaining_mib, 1),
        total_mib=stats.total_mib, mib_s=round(stats.mib_s, 1),
        dirty_mib_s=round(stats.dirty_mib_s, 1), iteration=stats.iteration,
        downtime_ms=round(stats.expected_downtime_ms, 1),
        eta_s=round(min(eta_s(stats.remaining_mib, stats.mib_s, stats.dirty_mib_s), 1e6), 1),
        elapsed_s=round(stats.elapsed_s, 1))


@dataclass
class MigrationRunner:
    """Runs moves whose source is ``hypervisor.host``."""

    store: Store
    hypervisor: Hypervisor
    settings: Settings
    locate: Locate
    runner_id: str
    publish: Publish = field(default=lambda move, progress: None)
    clock: Callable[[], float] = time.time
    task_id: str = ""
    sleep: Callable[[float], None] = time.sleep

    def run(self, move_id: str) -> Outcome:
        move = self.store.claim_move(move_id, self.runner_id, self.settings.move_lease_s,
                                     self.task_id)
        if move is None:
            current = self.store.find_move(move_id)
            state = current.state if current else "missing"
            return Outcome(move_id, state, "not claimed: already taken or finished", ran=False)
        try:
            return self._run_claimed(move)
        except Settled as settled:
            return conclude(self.store, move, settled.picture,
                            f"the migration failed; {move.vm} still runs on {move.source}")
        except (Replan, DestinationError) as exc:
            return self._replan(move, str(exc))
        except MoveCancelled as exc:
            return settle_on_source(self.store, move, MoveState.CANCELLED.value, str(exc))
        except (MoveFailed, HypervisorError) as exc:
            return self._fail(move, str(exc))

    def _run_claimed(self, move: Move) -> Outcome:
        vm, dest, cold = self._precheck(move)
        moving = self.store.advance_move(move.id, move.token, MoveState.MIGRATING.value,
                                         lease_s=self.settings.move_lease_s)
        if moving is None:
            raise MoveFailed("lost the claim before migrating")
        if cold:
            return self._move_stopped(moving, vm, dest)
        target = MigrationTarget(dest.name, dest.migration_uri)
        for attempt in Retrying(stop=stop_after_attempt(self.settings.migrate_retries + 1),
                                wait=wait_exponential(multiplier=0.5, max=8),
                                retry=retry_if_exception(_retryable), reraise=True):
            with attempt:
                try:
                    self._migrate_once(moving, vm, target)
                except (HypervisorError, MoveFailed, MoveCancelled):
                    self._look_after_failure(moving, vm, dest)
                    raise
        return self._verify_and_commit(moving, vm, dest)

    def _look_after_failure(self, move: Move, vm: VM, dest: Host) -> None:
        """An error says nothing reliable about where the VM is: unless both hosts say
        it simply stayed here, the move is settled by what they say."""
        picture = settler(self.store, move, self.settings, self.sleep).settle(
            self.hypervisor, self.locate(dest), vm.name, stopped=False)
        self.store.emit(move.job_id, "move.sighted", move=move.id, vm=move.vm, by="runner",
                        verdict=picture.settlement.verdict.value, seen=picture.describe(),
                        looks=picture.looks)
        if picture.settlement.verdict is not Where.STAYED:
            raise Settled(picture)

    def _check_cancel(self, move: Move, asked: bool | None = None) -> None:
        if asked if asked is not None else self.store.cancel_asked(move.job_id):
            if self.hypervisor.job_stats(move.vm) is not None:
                self.hypervisor.abort_job(move.vm)
            raise MoveCancelled(f"job cancelled; {move.vm} stays on {move.source}")

    def _precheck(self, move: Move) -> tuple[VM, Host, bool]:
        """The VM, its destination, and whether it moves stopped (by its definition)."""
        facts = self.store.move_facts(move)
        self._check_cancel(move, facts.cancelled)
        vm, dest = facts.vm, facts.destination
        if vm is None or dest is None:
            raise MoveFailed(f"unknown {'VM' if vm is None else 'host'}"
                             f" {move.vm if vm is None else move.destination!r}")
        if vm.host != move.source:
            raise MoveFailed(f"VM {move.vm} is recorded on {vm.host} now, not on"
                             f" {move.source}; nothing was done")
        try:
            here = self.hypervisor.lookup(move.vm)
        except DomainGone:
            raise MoveFailed(f"VM {move.vm} is not on {self.hypervisor.host}") from None
        cold = vm.state == VMState.STOPPED.value and here.state in STOPPED_DOMAIN
        if here.state is not DomainState.RUNNING and not cold:
            raise MoveFailed(f"VM {move.vm} is {here.state} on {self.hypervisor.host}"
                             f" but recorded {vm.state}")
        if dest.state != HostState.ACTIVE.value:
            raise Replan(f"destination {dest.name} is {dest.state}")
        if not facts.destination_beats:
            raise Replan(f"destination {dest.name} has no live agent")
        self._preflight(move, vm, dest)
        return vm, dest, cold

    def _preflight(self, move: Move, vm: VM, dest: Host) -> None:
        """Ask the destination's hypervisor whether it can take the guest; if not, the
        move is placed again without that host."""
        try:
            reasons = self.locate(dest).preflight(vm.needs, vm.definition, dest.node)
        except HypervisorError as exc:
            raise Replan(f"pre-flight on {dest.name} could not ask its hypervisor: {exc}",
                         ) from None
        if reasons:
            self.store.emit(move.job_id, "move.preflight_failed", move=move.id, vm=vm.name,
                            destination=dest.name, reasons=reasons)
            raise Replan(f"pre-flight on {dest.name}: {'; '.join(reasons)}")

    def _move_stopped(self, move: Move, vm: VM, dest: Host) -> Outcome:
        """A stopped VM moves by its definition: defined (not started) on the destination,
        then undefined here. Nothing runs anywhere meanwhile; if this host will not let
        go, the new definition is removed again and the move fails."""
        there = self.locate(dest)
        there.define(DomainSpec.of(vm))
        try:
            self.hypervisor.destroy(vm.name)
        except HypervisorError as exc:
            there.destroy(vm.name)
            raise MoveFailed(f"could not undefine {vm.name} here: {exc}") from None
        self._report(move, Progress(percent=100.0, total_mib=float(vm.memory_mib)))
        return self._verify_and_commit(move, vm, dest, stopped=True)

    def _migrate_once(self, move: Move, vm: VM, target: MigrationTarget) -> None:
        cfg = policy_config(self.settings, vm.policy)
        params = MigrationParams(bandwidth_mib_s=cfg.bandwidth_mib_s,
                                 max_downtime_ms=cfg.max_downtime_ms,
                                 auto_converge=cfg.allow_auto_converge,
                                 postcopy=cfg.allow_postcopy)
        errors: list[BaseException] = []

        def call() -> None:
            try:
                self.hypervisor.migrate(vm.name, target, params)
            except BaseException as exc:  # handed to the polling thread
                errors.append(exc)

        worker = threading.Thread(target=call, name=f"migrate-{vm.name}", daemon=True)
        worker.start()
        try:
            self._watch(move, vm, worker, cfg)
        finally:
            worker.join(ABORT_GRACE_S)  # after an abort, let the hypervisor call unwind
        if errors:
            raise errors[0]

    def _watch(self, move: Move, vm: VM, worker: threading.Thread, cfg: PolicyConfig) -> None:
        watch = Watch(started_at=self.clock())
        while worker.is_alive():
            worker.join(self.settings.poll_interval_s)
            stats = self.hypervisor.job_stats(vm.name)
            if stats is None:
                continue
            self._check_cancel(move)
            now = self.clock()
            observe(watch, stats.remaining_mib, now)
            self._report(move, progress_of(stats))
            self._apply(decide(watch, vm.memory_mib, now, cfg), vm.name, watch)

    def _apply(self, decision: Decision, name: str, watch: Watch) -> None:
        if decision.verdict is Verdict.RAISE_DOWNTIME:
            watch.downtime_step += 1
            self.hypervisor.set_max_downtime(name, decision.downtime_ms)
        elif decision.verdict is Verdict.POSTCOPY and not watch.postcopy:
            watch.postcopy = True
            self.hypervisor.start_postcopy(name)
        elif decision.verdict is Verdict.ABORT:
            self.hypervisor.abort_job(name)
            raise MoveFailed(f"aborted by policy: {decision.reason}")

    def _report(self, move: Move, progress: Progress) -> None:
        updated = self.store.advance_move(move.id, move.token, lease_s=self.settings.move_lease_s,
                                          progress=progress.to_dict())
        if updated is None:
            self.hypervisor.abort_job(move.vm)
            raise MoveFailed("the move was taken from this runner; migration aborted")
        self.store.emit(move.job_id, "move.progress", move=move.id, vm=move.vm,
                        **progress.to_dict())
        self.publish(updated, progress)

    def _verify_and_commit(self, move: Move, vm: VM, dest: Host, stopped: bool = False,
                           ) -> Outcome:
        self.store.advance_move(move.id, move.token, MoveState.VERIFYING.value)
        picture = settler(self.store, move, self.settings, self.sleep).settle(
            self.hypervisor, self.locate(dest), vm.name, stopped)
        return conclude(self.store, move, picture,
                        f"VM {vm.name} did not arrive on {dest.name} after migration")

    def _replan(self, move: Move, reason: str) -> Outcome:
        excluded = sorted({*move.excluded, move.destination})
        self.store.release(move.destination, move.id)
        self.store.advance_move(move.id, move.token, MoveState.PENDING.value, destination="",
                                excluded=excluded, error=reason)
        return Outcome(move.id, MoveState.PENDING.value, f"re-plan: {reason}")

    def _fail(self, move: Move, reason: str) -> Outcome:
        return settle_failed(self.store, move, reason)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, TransientError) and not isinstance(exc, DestinationError)


__all__ = ["MigrationRunner", "MoveFailed", "Outcome", "PermanentError", "Replan", "commit",
           "conclude"]
