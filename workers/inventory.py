"""Inventory: start a VM on a hypervisor and record it, so store and host agree."""

from __future__ import annotations

from fleet.core.errors import InvalidInput
from fleet.core.hypervisor import STOPPED_DOMAIN, DomainSpec, DomainState, Hypervisor
from fleet.core.models import VM, VMState
from fleet.store import Store


def create_vm(store: Store, hv: Hypervisor, vm: VM) -> VM:
    """Define and start ``vm`` on ``hv`` (its host), then write its record."""
    if store.find_vm(vm.name) is not None:
        raise InvalidInput(f"VM {vm.name} already exists")
    hv.start(DomainSpec.of(vm))
    vm.host, vm.state = hv.host, VMState.RUNNING.value
    store.put_vm(vm)
    return vm


def sweep_strays(store: Store, hv: Hypervisor) -> list[str]:
    """Clean domains this host holds for VMs that fleet records elsewhere.

    A host that was fenced and came back still has the definitions of VMs restarted
    elsewhere: shut-off ones are undefined, so nobody can start a second copy by
    mistake. A *running* stray means two copies: it is never touched here, only raised
    as an alert. Domains of VMs in an unfinished move are left alone.
    """
    cleaned = []
    for dom in hv.list_domains():
        vm = store.find_vm(dom.name)
        if vm is None or vm.host == hv.host or store.owning_job(vm.name) is not None:
            continue
        if dom.state is DomainState.RUNNING:
            store.emit("", "alert", alert="two_copies", subject=vm.name,
                       message=f"{vm.name} runs on {hv.host} but fleet records it on {vm.host}")
            store.journal.count("alerts", kind="two_copies")
            continue
        if dom.state in STOPPED_DOMAIN:
            hv.destroy(dom.name)
            store.emit("", "host.stray_undefined", host=hv.host, vm=vm.name, owner=vm.host)
            cleaned.append(dom.name)
    return cleaned
