"""Choose and open a hypervisor adapter by driver name, in the calling process."""

from __future__ import annotations

from fleet.core.errors import InvalidInput
from fleet.core.hypervisor import Hypervisor
from fleet.settings import Settings
from fleet.store import Store
from workers.hypervisors.sim import SimHypervisor

DRIVERS = ("sim", "libvirt")


def open_hypervisor(driver: str, host: str, uri: str, store: Store, settings: Settings,
                    ) -> Hypervisor:
    """The adapter for ``host``; libvirt is imported only when asked for."""
    if driver == "sim":
        return SimHypervisor(store.r, store.keys, host, speed=settings.sim_speed,
                             bandwidth_mib_s=settings.sim_bandwidth_mib_s,
                             switch_gap_s=settings.sim_switch_gap_s)
    if driver == "libvirt":
        from workers.hypervisors.libvirt import LibvirtHypervisor

        adapter: Hypervisor = LibvirtHypervisor(
            host, uri or "qemu:///system", allow_tcp=settings.migration_allow_tcp,
            roots=[*settings.domain_roots, *settings.shared_storage])
        return adapter
    raise InvalidInput(f"unknown driver {driver!r}: choose one of {', '.join(DRIVERS)}")
