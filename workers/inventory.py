"""Inventory: start a VM on a hypervisor and record it, so store and host agree."""

from __future__ import annotations

from fleet.core.domainfacts import needs, read_domain, vm_attrs, with_metadata
from fleet.core.errors import InvalidInput
from fleet.core.hypervisor import STOPPED_DOMAIN, DomainSpec, DomainState, Hypervisor
from fleet.core.models import VM, VMState
from fleet.store import Store
from workers.sighting import reported_running


def create_vm(store: Store, hv: Hypervisor, vm: VM) -> VM:
    """Define and start ``vm`` on ``hv`` (its host), then write its record."""
    if store.find_vm(vm.name) is not None:
        raise InvalidInput(f"VM {vm.name} already exists")
    if vm.definition:
        vm.definition = with_metadata(vm.definition,
                                      vm_attrs(vm.ha, vm.priority, vm.group, vm.rule))
        facts = read_domain(vm.definition)
        vm.devices, vm.needs = facts.devices(), needs(facts)
    hv.start(DomainSpec.of(vm))
    vm.host, vm.state = hv.host, VMState.RUNNING.value
    store.put_vm(vm)
    return vm


def sweep_strays(store: Store, hv: Hypervisor) -> list[str]:
    """Clean domains this host holds for VMs that fleet records elsewhere.

    A host that was fenced and came back still has the definitions of VMs restarted
    elsewhere: shut-off ones are undefined, so nobody can start a second copy by
    mistake. A *running* stray is a second copy: if the recorded host's heartbeat
    confirms the VM running there, the stray is paused at once and then destroyed
    (events ``vm.copy_pause`` and ``vm.copy_remove``); if it does not, the record may
    be the one that is wrong and nothing is touched — an alert says so. Domains of VMs
    that a move or a restart holds, and domains in a migration (an operator's ``virsh
    migrate`` arriving), are left alone.
    """
    cleaned = []
    for dom in hv.list_domains():
        vm = store.find_vm(dom.name)
        if vm is None or vm.host == hv.host or dom.migrating \
                or store.lock_owner(vm.name) is not None:
            continue  # an incoming migration (fleet's or an operator's) is not a copy
        if dom.state in STOPPED_DOMAIN:
            hv.destroy(dom.name)
            store.emit("", "host.stray_undefined", host=hv.host, vm=vm.name, owner=vm.host)
            cleaned.append(dom.name)
        elif reported_running(store, vm.host, vm.name):
            _end_second_copy(store, hv, dom.name, dom.state, vm.host)
            cleaned.append(dom.name)
        elif dom.state is DomainState.RUNNING:
            store.emit("", "alert", alert="record_disagrees", subject=vm.name,
                       message=f"{vm.name} runs on {hv.host}; fleet records it on {vm.host},"
                               f" which does not report it running")
            store.journal.count("alerts", kind="record_disagrees")
    return cleaned


def _end_second_copy(store: Store, hv: Hypervisor, name: str, state: DomainState,
                     owner: str) -> None:
    """Pause, then destroy, a copy of ``name`` that runs beside the recorded one."""
    why = f"a second copy: fleet records {name} running on {owner}"
    if state is DomainState.RUNNING:
        hv.pause(name)
        store.emit("", "vm.copy_pause", vm=name, host=hv.host, reason=why)
        store.journal.count("alerts", kind="two_copies")
    if reported_running(store, owner, name):
        hv.destroy(name)
        store.emit("", "vm.copy_remove", vm=name, host=hv.host, reason=why)
