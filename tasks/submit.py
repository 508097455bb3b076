"""Submitting jobs: validate, write the job and its moves, then tell the controller.

The record is written before any message is sent, so a lost message leaves a pending
job the controller's sweeper can see, never a VM moved without a record. A VM's power
(stop, start) is asked of its host's agent directly and answered at once.
"""

from __future__ import annotations

from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout

from fleet.core.errors import Conflict, FleetError, InvalidInput
from fleet.core.models import HostState, JobKind, Move
from fleet.core.names import check_name
from fleet.store import Store
from tasks.app import app
from workers.drain import create_drain, create_return, running_drain, start_maintenance
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
    app.send_task("fleet.job.start", kwargs={"job_id": job.id})
    return job.id, True


def submit_drain(store: Store, host: str, concurrency: int, requested_by: str,
                 ) -> tuple[str, bool]:
    """Put ``host`` in maintenance and start draining it; returns (job id, created).

    The controller plans the drain on its kept placement state when the job starts.
    A second drain of the same host returns the running job.
    """
    check_name("host", host)
    store.get_host(host)
    running = running_drain(store, host)
    if running is not None:
        return running.id, False
    refuse_hopeless_drain(store, host)
    start_maintenance(store, host)
    job = create_drain(store, host, concurrency, requested_by)
    app.send_task("fleet.job.start", kwargs={"job_id": job.id})
    return job.id, True


def refuse_hopeless_drain(store: Store, host: str) -> None:
    """``InvalidInput`` (nothing written) if ``host`` holds VMs and no other host is
    active with a live agent to receive them."""
    held = sum(1 for vm in store.list_vms() if vm.host == host)
    receivers = [h.name for h in store.list_hosts() if h.name != host
                 and h.state == HostState.ACTIVE.value and store.heartbeat(h.name)]
    if held and not receivers:
        raise InvalidInput(f"cannot drain {host}: no other host is active with a live agent"
                           f" to receive its {held} VM(s); nothing was changed")


def submit_return(store: Store, host: str, concurrency: int, requested_by: str) -> str | None:
    """Start migrating back what the last drain of ``host`` moved away."""
    job = create_return(store, host, concurrency, requested_by)
    if job is None:
        return None
    app.send_task("fleet.job.start", kwargs={"job_id": job.id})
    return job.id


def submit_cancel(store: Store, job_id: str, requested_by: str) -> None:
    job = store.get_job(job_id)
    if job.terminal:
        raise InvalidInput(f"job {job_id} already ended: {job.state}")
    app.send_task("fleet.job.cancel", kwargs={"job_id": job_id, "by": requested_by})


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
    result = app.send_task(f"fleet.vm.{action}", kwargs=kwargs, expires=wait_s)
    try:
        return dict(result.get(timeout=wait_s))
    except CeleryTimeout:
        raise FleetError(f"no answer from the agent of {vm.host} within {wait_s:.0f} s"
                         ) from None
