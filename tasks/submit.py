"""Submitting jobs: validate, write the job and its moves, then tell the controller.

The record is written before any message is sent, so a lost message leaves a pending
job the controller's sweeper can see, never a VM moved without a record. A VM's power
(stop, start) is asked of its host's agent directly and answered at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout

from fleet.core.errors import Conflict, FleetError, InvalidInput
from fleet.core.models import HostState, Job, JobKind, Move
from fleet.core.names import check_name
from fleet.store import Store
from tasks.signed import send
from workers.drain import (
    create_drain,
    create_return,
    drained_hosts,
    running_drain,
    start_maintenance,
)
from workers.vmpower import POWERABLE


def submit_migration(store: Store, vm_name: str, to: str | None, requested_by: str,
                     ) -> tuple[str, bool]:
    """Create a migrate job for ``vm_name``; returns (job id, created).

    If the VM is already moving, returns the job that moves it and ``created=False``.
    """
    vm = store.get_vm(check_name("VM", vm_name))
    if to is not None:
        dest = store.get_host(check_name("host", to))
        if dest.name == vm.host:
            raise InvalidInput(f"VM {vm.name} already runs on {dest.name}")
        if dest.state != HostState.ACTIVE.value:
            raise InvalidInput(f"host {dest.name} is {dest.state} and receives no VMs")
    move = Move(id="", job_id="", vm=vm.name, source=vm.host, target=to or "")
    try:
        job = store.create_move_job(JobKind.MIGRATE, requested_by, [move], target=vm.name)
    except Conflict:
        owner = store.owning_job(vm.name)
        if owner is None:
            raise
        return owner, False
    send("fleet.job.start", {"job_id": job.id})
    return job.id, True


def submit_drain(store: Store, hosts: Sequence[str], concurrency: int, requested_by: str,
                 ) -> tuple[str, bool]:
    """Put ``hosts`` in maintenance and start draining them together; returns (job id,
    created).

    The controller plans the drain on its kept placement state when the job starts, and
    no VM goes to a host of the same drain. Asking again for the hosts of a running drain
    returns it; a host already draining in another job is refused (nothing written).
    """
    wanted = list(dict.fromkeys(check_name("host", h) for h in hosts))
    if not wanted:
        raise InvalidInput("name at least one host to drain")
    for host in wanted:
        store.get_host(host)
    running = {h: job for h in wanted if (job := running_drain(store, h)) is not None}
    if running:
        return _same_drain(wanted, running)
    refuse_hopeless_drain(store, wanted)
    start_maintenance(store, wanted)
    job = create_drain(store, wanted, concurrency, requested_by)
    send("fleet.job.start", {"job_id": job.id})
    return job.id, True


def _same_drain(wanted: list[str], running: dict[str, Job]) -> tuple[str, bool]:
    """The running drain of exactly ``wanted``, or ``InvalidInput`` naming the overlap."""
    jobs = {job.id: job for job in running.values()}
    if len(jobs) == 1:
        job = next(iter(jobs.values()))
        if set(drained_hosts(job)) == set(wanted):
            return job.id, False
    host, job = next(iter(running.items()))
    raise InvalidInput(f"host {host} is already draining in job {job.id} (hosts "
                       f"{job.target}); wait for it or cancel it; nothing was changed")


def refuse_hopeless_drain(store: Store, hosts: Sequence[str]) -> None:
    """``InvalidInput`` (nothing written) if ``hosts`` hold VMs and no other host is
    active with a live agent to receive them."""
    held = sum(1 for vm in store.list_vms() if vm.host in hosts)
    receivers = [h.name for h in store.list_hosts() if h.name not in hosts
                 and h.state == HostState.ACTIVE.value and store.heartbeat(h.name)]
    if held and not receivers:
        names = ", ".join(hosts)
        raise InvalidInput(f"cannot drain {names}: no other host is active with a live agent"
                           f" to receive {held} VM(s); nothing was changed")


def submit_return(store: Store, host: str, concurrency: int, requested_by: str) -> str | None:
    """Start migrating back what the last drain of ``host`` moved away."""
    job = create_return(store, host, concurrency, requested_by)
    if job is None:
        return None
    send("fleet.job.start", {"job_id": job.id})
    return job.id


def submit_cancel(store: Store, job_id: str, requested_by: str) -> None:
    job = store.get_job(job_id)
    if job.terminal:
        raise InvalidInput(f"job {job_id} already ended: {job.state}")
    send("fleet.job.cancel", {"job_id": job_id, "by": requested_by})


def request_power(store: Store, vm_name: str, action: str, by: str, wait_s: float,
                  timeout_s: float = 0.0) -> dict[str, Any]:
    """Ask ``vm_name``'s host to ``stop`` or ``start`` it and wait for the answer.

    The message expires with the wait, so an agent that answers late never acts on a
    request its caller gave up on.
    """
    vm = store.get_vm(check_name("VM", vm_name))
    if vm.state not in POWERABLE:
        raise InvalidInput(f"VM {vm.name} is {vm.state}: only a running or stopped VM can"
                           f" be asked to {action}")
    owner = store.owning_job(vm.name)
    if owner is not None:
        raise InvalidInput(f"VM {vm.name} is moving in job {owner}; cancel it or wait")
    if store.heartbeat(vm.host) is None:
        raise FleetError(f"the agent of {vm.host} is silent: nothing can {action} {vm.name}")
    kwargs: dict[str, Any] = {"vm": vm.name, "source": vm.host, "by": by}
    if action == "stop":
        kwargs["timeout_s"] = timeout_s
    result = send(f"fleet.vm.{action}", kwargs, expires=wait_s)
    try:
        return dict(result.get(timeout=wait_s))
    except CeleryTimeout:
        raise FleetError(f"no answer from the agent of {vm.host} within {wait_s:.0f} s"
                         ) from None
