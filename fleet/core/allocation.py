"""How much of a host may be allocated: physical capacity times ratio, minus reserves."""

from __future__ import annotations

from fleet.core.models import Host
from fleet.core.planmodel import PlacementConfig


def limits(host: Host, config: PlacementConfig) -> tuple[float, int]:
    """The vCPUs and MiB that VMs and in-flight claims may use on ``host`` together."""
    cpu = host.vcpus * config.cpu_allocation_ratio
    mem = int(host.memory_mib * config.ram_allocation_ratio) - config.reserved_host_memory_mib
    return cpu, mem
