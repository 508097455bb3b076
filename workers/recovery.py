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
from fleet.core.models import VM, VMState
from fleet.store import Store
from workers.sighting import find

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


def move_record(store: Store, name: str, source: str, target: str) -> VM | None:
    """Record ``name`` running on ``target`` if it is still recorded on ``source`` (CAS):
    the one step that decides who may run a VM of a dead host."""
    def mutate(vm: VM) -> VM | None:
        if vm.host != source:
            return None
        vm.host, vm.state = target, VMState.RUNNING.value
        return vm

    return store.cas_vm(name, mutate)


def _running_here(hv: Hypervisor, name: str) -> bool:
    found = find(hv, name)
    return found is not None and found.state is DomainState.RUNNING


def restart(store: Store, hv: Hypervisor, name: str, source: str) -> RestartResult:
    """Start ``name`` (last seen on the fenced ``source``) on ``hv``'s host."""
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
    store.update_vm(vm.name, host=source, state=VMState.DOWN.value)
    return RestartResult(vm.name, vm.host, False, why)
