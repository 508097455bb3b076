"""A VM's power on its own host: the operator's stop and start, the VM guard's restart.

All three run on the VM's host (its agent) and re-check the record before acting: the VM
is still recorded here and no move holds it. A stop writes its intent before the domain
stops (``stopping``, then ``stopped``), so the VM guard never starts again a VM an
operator stopped; a start records ``running`` only once the domain runs. Starting a
running domain, or stopping a stopped one, does nothing, so a duplicate message cannot
harm; and a VM only ever starts on the host its record names, from its stored
definition, so no second copy can come of it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from fleet.core.hypervisor import (
    STOPPED_DOMAIN,
    DomainGone,
    DomainSpec,
    DomainState,
    Hypervisor,
    HypervisorError,
)
from fleet.core.models import VM, VMState
from fleet.store import Store

POWERABLE = frozenset({VMState.RUNNING.value, VMState.STOPPING.value, VMState.STOPPED.value})


@dataclass(frozen=True)
class PowerResult:
    vm: str
    host: str
    ok: bool
    detail: str
    acted: bool = False  # the domain was started or stopped by this call


def _refusal(store: Store, hv: Hypervisor, name: str, states: Collection[str]) -> str:
    """Why ``name`` must not be powered here now ("" if it may)."""
    vm = store.find_vm(name)
    if vm is None:
        return "no such VM any more"
    if vm.host != hv.host:
        return f"recorded on {vm.host} now"
    if vm.state not in states:
        return f"recorded {vm.state}"
    if store.owning_job(name) is not None:
        return "a job is moving it"
    return ""


def _set_state(store: Store, name: str, host: str, state: str,
               was: Collection[str] = POWERABLE) -> VM | None:
    def mutate(vm: VM) -> VM | None:
        if vm.host != host or vm.state not in was or store.owning_job(name) is not None:
            return None
        vm.state = state
        return vm

    return store.cas_vm(name, mutate)


def _start(hv: Hypervisor, vm: VM) -> PowerResult:
    """Start ``vm``'s stopped domain here (a running one is left as it is)."""
    try:
        state = hv.lookup(vm.name).state
        if state is DomainState.RUNNING:
            return PowerResult(vm.name, hv.host, True, f"running on {hv.host} (already)")
        if state not in STOPPED_DOMAIN:
            return PowerResult(vm.name, hv.host, False, f"skipped: it is {state.value}")
        hv.start(DomainSpec.of(vm))
    except DomainGone:
        return PowerResult(vm.name, hv.host, False, f"skipped: not defined on {hv.host}")
    except HypervisorError as exc:
        return PowerResult(vm.name, hv.host, False, f"start failed: {exc}")
    return PowerResult(vm.name, hv.host, True, f"running on {hv.host}", acted=True)


def start_in_place(store: Store, hv: Hypervisor, name: str, attempt: int) -> PowerResult:
    """The VM guard's restart: start ``name`` again if it is stopped here, still meant to
    run (recorded ``running``) and not held by a move."""
    refusal = _refusal(store, hv, name, {VMState.RUNNING.value})
    if refusal:
        return PowerResult(name, hv.host, False, f"skipped: {refusal}")
    result = _start(hv, store.get_vm(name))
    if not result.acted:
        return result
    return PowerResult(name, hv.host, True, f"started again on {hv.host} (attempt {attempt})",
                       acted=True)


def start_vm(store: Store, hv: Hypervisor, name: str) -> PowerResult:
    """An operator's start of a stopped VM on its host; the record says ``running`` once
    the domain runs."""
    refusal = _refusal(store, hv, name, POWERABLE)
    if refusal:
        return PowerResult(name, hv.host, False, f"refused: {refusal}")
    result = _start(hv, store.get_vm(name))
    if result.ok:
        _set_state(store, name, hv.host, VMState.RUNNING.value)
    return result


def stop_vm(store: Store, hv: Hypervisor, name: str, timeout_s: float) -> PowerResult:
    """An operator's stop: record ``stopping`` first (the VM guard does not judge it),
    shut the guest down, power it off after ``timeout_s``, then record ``stopped``. Its
    definition stays. If the domain cannot be stopped, the record says ``running``."""
    refusal = _refusal(store, hv, name, POWERABLE)
    if refusal:
        return PowerResult(name, hv.host, False, f"refused: {refusal}")
    if _set_state(store, name, hv.host, VMState.STOPPING.value) is None:
        return PowerResult(name, hv.host, False, "refused: the record changed")
    stopping = {VMState.STOPPING.value}
    try:
        hv.shutdown(name, timeout_s)
    except DomainGone:
        _set_state(store, name, hv.host, VMState.STOPPED.value, stopping)
        return PowerResult(name, hv.host, True, f"stopped (not defined on {hv.host})")
    except HypervisorError as exc:
        _set_state(store, name, hv.host, VMState.RUNNING.value, stopping)
        return PowerResult(name, hv.host, False, f"shutdown failed: {exc}")
    _set_state(store, name, hv.host, VMState.STOPPED.value, stopping)
    return PowerResult(name, hv.host, True, f"stopped on {hv.host}", acted=True)
