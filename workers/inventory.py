"""Inventory: start a VM on a hypervisor and record it, so store and host agree."""

from __future__ import annotations

from collections.abc import Callable

from fleet.core.domainfacts import read_domain, take_definition, vm_attrs, with_metadata
from fleet.core.errors import InvalidInput
from fleet.core.hypervisor import (
    STOPPED_DOMAIN,
    DomainSpec,
    DomainState,
    Hypervisor,
    HypervisorError,
)
from fleet.core.models import VM, Host, VMState
from fleet.core.settlement import Copy, Seen
from fleet.store import Store
from workers.sighting import copy_on

Locate = Callable[[Host], Hypervisor]


def create_vm(store: Store, hv: Hypervisor, vm: VM) -> VM:
    """Define and start ``vm`` on ``hv`` (its host), then write its record."""
    if store.find_vm(vm.name) is not None:
        raise InvalidInput(f"VM {vm.name} already exists")
    if vm.definition:
        xml = with_metadata(vm.definition, vm_attrs(vm.ha, vm.priority, vm.group, vm.rule))
        take_definition(vm, xml, read_domain(xml))
    hv.start(DomainSpec.of(vm))
    vm.host, vm.state = hv.host, VMState.RUNNING.value
    store.put_vm(vm)
    return vm


def sweep_strays(store: Store, hv: Hypervisor, locate: Locate) -> list[str]:
    """Clean domains this host holds for VMs that fleet records elsewhere.

    The recorded host is asked now, through its own hypervisor (a heartbeat may be a
    second old: a guest an operator just migrated here still shows there). A host that
    was fenced and came back still has the definitions of VMs restarted elsewhere: a
    shut-off one is undefined when the recorded host holds the VM, so nobody can start a
    second copy by mistake. A *running* stray is a second copy when the recorded host
    runs the VM too: it is paused at once and destroyed once that host confirms its copy
    again (events ``vm.copy_pause``, ``vm.copy_remove``). A copy the recorded host does
    not hold was moved here out of band: discovery moves the record, nothing is touched
    here. A recorded host that cannot be asked decides nothing — an alert says so. VMs
    a move or a restart holds, and domains in a migration (an operator's ``virsh
    migrate`` arriving), are left alone.
    """
    cleaned = []
    domains = hv.list_domains()
    records = store.find_vms([d.name for d in domains])  # one round trip for all
    for dom in domains:
        vm = records.get(dom.name)
        if vm is None or vm.host == hv.host or dom.migrating \
                or store.lock_owner(vm.name) is not None:
            continue
        there = owner_copy(store, locate, vm)
        if dom.state in STOPPED_DOMAIN and there not in (Seen.ABSENT, Seen.UNKNOWN):
            hv.destroy(dom.name)
            store.emit("", "host.stray_undefined", host=hv.host, vm=vm.name, owner=vm.host)
            cleaned.append(dom.name)
        elif dom.state not in STOPPED_DOMAIN and there is DomainState.RUNNING:
            _end_second_copy(store, hv, locate, vm, dom.state)
            cleaned.append(dom.name)
        elif dom.state is DomainState.RUNNING and there is Seen.UNKNOWN:
            store.emit("", "alert", alert="record_disagrees", subject=vm.name,
                       message=f"{vm.name} runs on {hv.host}; fleet records it on {vm.host},"
                               f" which cannot be asked")
            store.journal.count("alerts", kind="record_disagrees")
    return cleaned


def owner_copy(store: Store, locate: Locate, vm: VM) -> Copy:
    """The state of ``vm``'s copy on its recorded host, asked now (a copy in a migration,
    or a host that cannot be asked: unknown)."""
    host = store.find_host(vm.host)
    if host is None:
        return Seen.UNKNOWN
    try:
        there = locate(host)
    except HypervisorError:
        return Seen.UNKNOWN
    seen, info = copy_on(there, vm.name)
    return Seen.UNKNOWN if info is not None and info.migrating else seen


def _end_second_copy(store: Store, hv: Hypervisor, locate: Locate, vm: VM,
                     state: DomainState) -> None:
    """Pause, then destroy, a copy of ``vm`` that runs beside the recorded one."""
    name, owner = vm.name, vm.host
    why = f"a second copy: fleet records {name} running on {owner}"
    if state is DomainState.RUNNING:
        hv.pause(name)
        store.emit("", "vm.copy_pause", vm=name, host=hv.host, reason=why)
        store.journal.count("alerts", kind="two_copies")
    if owner_copy(store, locate, vm) is DomainState.RUNNING:
        hv.destroy(name)
        store.emit("", "vm.copy_remove", vm=name, host=hv.host, reason=why)
