"""Host drains: plan the VMs of one or several hosts together, run the plan as one job,
bring VMs back.

The plan comes from the pure evacuation planner on a snapshot of the store (hosts, VMs,
in-flight claims). Each planned destination is only a proposal: the controller reserves
capacity atomically when it dispatches the move, and a move whose destination fails is
re-placed excluding it. VMs that fit nowhere become failed moves carrying the reasons.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from fleet.core.errors import InvalidInput
from fleet.core.evacuation import EvacuationPlan, plan_evacuation
from fleet.core.fleetstate import FleetState
from fleet.core.models import VM, HostState, Job, JobKind, Move, MoveState, VMState
from fleet.core.placement import query, select
from fleet.core.planmodel import PlacementConfig, plan_vm
from fleet.settings import Settings
from fleet.store import Store
from workers.planstate import KeptState, build


def placement_config(settings: Settings) -> PlacementConfig:
    return PlacementConfig(cpu_allocation_ratio=settings.cpu_allocation_ratio,
                           ram_allocation_ratio=settings.ram_allocation_ratio,
                           reserved_host_memory_mib=settings.reserved_host_memory_mib)


def fleet_state(store: Store, config: PlacementConfig) -> FleetState:
    """The placement engine's view of the stored fleet, counting in-flight claims."""
    return build(store, config)[0]


def plan_drain(st: FleetState, hosts: Sequence[str], concurrency: int) -> EvacuationPlan:
    """The plan for emptying ``hosts`` together on the placement state ``st`` (left
    unchanged): no VM goes to a host of the drain."""
    return plan_evacuation(st, hosts, max_per_source=concurrency,
                           max_per_destination=max(1, concurrency))


def drained_hosts(job: Job) -> list[str]:
    """The hosts a drain job empties (its target names them, comma-separated)."""
    return [h for h in job.target.split(",") if h]


def running_drain(store: Store, host: str) -> Job | None:
    """The unfinished drain job of ``host``, if any."""
    job = store.drain_job(host)
    return job if job is not None and not job.terminal else None


def create_drain(store: Store, hosts: Sequence[str], concurrency: int, requested_by: str,
                 ) -> Job:
    """Write the drain job of ``hosts``, ``concurrency`` moves at once per host (the job's
    own concurrency counts them all); the controller plans it when it starts
    (``fill_drain``)."""
    job = store.create_move_job(JobKind.DRAIN, requested_by, [], target=",".join(hosts),
                                concurrency=concurrency * len(hosts))
    for host in hosts:
        store.set_drain_job(host, job.id)
    return job


def needs_plan(job: Job) -> bool:
    return job.kind == JobKind.DRAIN.value and not job.summary.get("planned")


def fill_drain(store: Store, job: Job, plan: EvacuationPlan, plan_ms: float) -> None:
    """Give a drain job its moves: planned ones in wave order, then the VMs that fit
    nowhere as failed moves carrying the reasons."""
    reasons = {u.vm: "; ".join(u.reasons) or "no host can take it" for u in plan.unplaced}
    moves = [Move("", "", m.vm, m.source, planned=m.destination) for m in plan.moves]
    moves += [Move("", "", u.vm, u.source, state=MoveState.FAILED.value,
                   error=f"fits nowhere: {reasons[u.vm]}") for u in plan.unplaced]
    store.add_moves(job.id, moves)

    def mark(current: Job) -> Job:
        current.summary = {**current.summary, "planned": True,
                           "plan_ms": round(plan_ms, 3), "strategy": plan.strategy}
        return current

    store.update_job(job.id, mark)
    store.emit(job.id, "job.planned", moves=len(plan.moves), unplaced=sorted(reasons),
               strategy=plan.strategy, plan_ms=round(plan_ms, 3))


def start_maintenance(store: Store, hosts: Sequence[str]) -> None:
    """Put every one of ``hosts`` in maintenance, or none (``InvalidInput`` naming the
    first host that is neither active nor in maintenance)."""
    for host in hosts:
        current = store.get_host(host)
        if current.state not in (HostState.ACTIVE.value, HostState.MAINTENANCE.value):
            raise InvalidInput(f"host {host} is {current.state}; only active hosts can be"
                               " drained")
    for host in hosts:
        store.set_host_state(host, HostState.MAINTENANCE.value)


def returning_vms(store: Store, host: str) -> list[VM]:
    """VMs the last drain of ``host`` moved away that are still elsewhere and idle."""
    job = store.drain_job(host)
    if job is None:
        return []
    moved = [m.vm for m in store.job_moves(job)
             if m.state == MoveState.SUCCEEDED.value and m.source == host]
    found = [store.find_vm(name) for name in moved]
    return [vm for vm in found if vm is not None and vm.host != host
            and store.owning_job(vm.name) is None]


def create_return(store: Store, host: str, concurrency: int, requested_by: str) -> Job | None:
    """A job migrating back what the last drain of ``host`` moved away (None if nothing)."""
    vms = returning_vms(store, host)
    if not vms:
        return None
    moves = [Move("", "", vm.name, vm.host, target=host) for vm in vms]
    return store.create_move_job(JobKind.RETURN, requested_by, moves, target=host,
                                 concurrency=concurrency)


class DrainPlanner:
    """Plans drain jobs and places single moves on a kept placement state, one at a time
    (the state is shared): no read of the whole fleet per move."""

    def __init__(self, store: Store, config: PlacementConfig) -> None:
        self.store = store
        self.kept = KeptState(store, config)
        self._lock = threading.Lock()

    def __call__(self, job: Job) -> None:
        with self._lock:
            started = time.perf_counter()
            hosts = drained_hosts(job)
            per_host = max(1, job.concurrency // max(1, len(hosts)))
            plan = plan_drain(self.kept.get(), hosts, per_host)
            took_ms = (time.perf_counter() - started) * 1000
        fill_drain(self.store, job, plan, took_ms)

    def place(self, vm: VM, exclude: Sequence[str]) -> str | None:
        """The best host for ``vm`` other than its own and ``exclude``, or None."""
        with self._lock:
            st = self.kept.get()
            with st.trial():
                if vm.name in st.placed:
                    st.remove(vm.name)
                chosen = select(st, query(st, plan_vm(vm, vm.rule), exclude))
            return None if chosen is None else st.hosts[chosen].name


def catch_up(store: Store, job: Job, moves: list[Move]) -> list[Move] | None:
    """What a drain whose moves all ended still has to do before it may end: None while
    a move of another job is still bringing a VM onto a drained host (wait for it);
    else moves added for VMs found on those hosts that this drain has not tried yet
    (they arrived while it ran), which may be none."""
    hosts = set(drained_hosts(job))
    if any(m.destination in hosts for m in store.active_moves()):
        return None
    tried = {m.vm for m in moves}
    found = [vm for vm in store.list_vms() if vm.host in hosts and vm.name not in tried
             and vm.state != VMState.DOWN.value and store.lock_owner(vm.name) is None]
    if not found:
        return []
    added = store.add_moves(job.id, [Move("", "", vm.name, vm.host) for vm in found])
    store.emit(job.id, "job.caught_up", vms=[vm.name for vm in found])
    return added
