"""Restarting a VM of a fenced host on another host, never as a second copy.

The VM record moves from the dead source to the target with a compare-and-set before
anything starts; a duplicate message or a second monitor loses that race and starts
nothing. If the start fails the record goes back to the source, marked down.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from fleet.core.hypervisor import DomainSpec, DomainState, Hypervisor, HypervisorError
from fleet.core.lease import Term
from fleet.core.models import VM, VMState
from fleet.store import Store
from fleet.store.jobs import RESTART_LOCK, restart_owner
from workers.sighting import find, reported_running

_DISK = re.compile(r"<source\s+file=['\"]([^'\"]+)['\"]")


def missing_storage(definition: str) -> list[str]:
    """Disk images a definition names that this host cannot see (shared storage check)."""
    return [path for path in _DISK.findall(definition) if not os.path.exists(path)]


@dataclass(frozen=True)
class RestartResult:
    vm: str
    target: str
    ok: bool
    detail: str

    def event(self) -> dict[str, object]:
        return {"type": "recover", "vm": self.vm, "target": self.target, "ok": self.ok,
                "detail": self.detail}


def move_record(store: Store, name: str, source: str, target: str,
                term: Term | None = None) -> VM | None:
    """Record ``name`` running on ``target`` if it is still recorded on ``source`` (CAS):
    the one step that decides who may run a VM of a dead host. With ``term`` (the
    monitor's), the write also needs the monitor lease to still name it (``LostLease``)."""
    def mutate(vm: VM) -> VM | None:
        if vm.host != source:
            return None
        vm.host, vm.state = target, VMState.RUNNING.value
        return vm

    if term is not None:
        return store.failover.cas_vm(name, mutate, term)
    return store.cas_vm(name, mutate)


def _running_here(hv: Hypervisor, name: str) -> bool:
    found = find(hv, name)
    return found is not None and found.state is DomainState.RUNNING


def restart(store: Store, hv: Hypervisor, name: str, source: str,
            hold_s: float = 60.0) -> RestartResult:
    """Start ``name`` (last seen on the fenced ``source``) on ``hv``'s host.

    The restart holds the VM's lock (owner ``restart/<source>/<target>/<deadline>``)
    from before the record moves until the domain runs, so no move can start meanwhile
    and an interrupted restart is found and settled (``settle_interrupted``)."""
    target = hv.host
    owner = restart_owner(source, target) + f"/{store.clock() + hold_s:.3f}"
    if not store.lock_vm(name, owner):
        return RestartResult(name, target, False,
                             f"held by {store.lock_owner(name)}; not restarted")
    result = _restart_held(store, hv, name, source)
    store.release_vm(name, owner)  # not on an unexpected error: the sweep settles that
    return result


def _restart_held(store: Store, hv: Hypervisor, name: str, source: str) -> RestartResult:
    target = hv.host
    vm = move_record(store, name, source, target)
    if vm is None:
        current = store.get_vm(name)
        if current.host == target and _running_here(hv, name):
            return RestartResult(name, target, True, f"running on {target} (already)")
        return RestartResult(name, target, False, f"record moved to {current.host}; skipped")
    missing = missing_storage(vm.definition)
    if missing:
        return _undo(store, vm, source, f"storage not shared: {missing[0]} missing on {target}")
    try:
        hv.start(DomainSpec.of(vm))
    except HypervisorError as exc:
        return _undo(store, vm, source, f"start failed: {exc}")
    return RestartResult(name, target, True, f"running on {target}")


def _undo(store: Store, vm: VM, source: str, why: str) -> RestartResult:
    store.place_vm(vm.name, source, VMState.DOWN.value, on=vm.host)
    return RestartResult(vm.name, vm.host, False, why)


def settle_interrupted(store: Store) -> list[str]:
    """Settle restarts whose holder vanished past its deadline (its agent died between
    moving the record and starting the domain): if the target's live heartbeat reports
    the VM running, the restart happened; otherwise the record goes back to its fenced
    source as ``down``, where failover plans its restart again. Returns those VMs."""
    settled = []
    for vm in sorted(store.r.smembers(store.keys.vm_locks)):
        owner = store.lock_owner(vm) or ""
        if not owner.startswith(RESTART_LOCK):
            continue
        source, target, deadline = owner[len(RESTART_LOCK):].split("/")
        if float(deadline) > store.clock() or not store.release_vm(vm, owner):
            continue
        if not reported_running(store, target, vm):
            store.place_vm(vm, source, VMState.DOWN.value, on=target)
        store.emit("", "vm.restart_settled", vm=vm, source=source, target=target,
                   started=reported_running(store, target, vm))
        settled.append(vm)
    return settled
