"""A host's record from its hypervisor: facts read from libvirt, capacity derived from them.

The agent calls ``publish_host`` at start and every ``node_facts_interval_s`` (and at
once when its host record is missing, as after Redis lost its data). The record's
``node`` holds the facts (``fleet.core.nodefacts``); its ``vcpus``/``memory_mib`` come
from them (``capacity_from = "node"``) unless the agent was given ``--vcpus`` /
``--memory-mib`` (``"configured"``). Placement subtracts ``reserved_host_memory_mib``.
A host's state and labels are never touched here.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet.core.hypervisor import Hypervisor
from fleet.core.models import Host
from fleet.store import Store
from fleet.store.changes import changed
from fleet.store.records import cas


@dataclass(frozen=True)
class Registration:
    """How an agent registers its host: driver, addresses, configured capacity (if any)."""

    driver: str
    address: str = ""
    migration_uri: str = ""
    vcpus: int | None = None
    memory_mib: int | None = None


DEFAULT_VCPUS, DEFAULT_MEMORY_MIB = 16, 32768  # a new host whose hypervisor cannot tell


def _capacity(host: Host, reg: Registration) -> tuple[int, int, str]:
    """Configured values win; else the node's facts; else what the record has (or the
    defaults for a new record)."""
    cpus, memory = host.node.get("cpus"), host.node.get("memory_mib")
    if reg.vcpus is None and reg.memory_mib is None and isinstance(cpus, int) \
            and isinstance(memory, int):
        return cpus, memory, "node"
    return (reg.vcpus if reg.vcpus is not None else int(cpus or host.vcpus or DEFAULT_VCPUS),
            reg.memory_mib if reg.memory_mib is not None
            else int(memory or host.memory_mib or DEFAULT_MEMORY_MIB), "configured")


def _apply(host: Host, reg: Registration, node: dict[str, object]) -> Host:
    host.driver = reg.driver
    host.address = reg.address or host.address
    host.migration_uri = reg.migration_uri or host.migration_uri
    if node:
        host.node = node
    host.vcpus, host.memory_mib, host.capacity_from = _capacity(host, reg)
    return host


def publish_host(store: Store, hv: Hypervisor, reg: Registration) -> Host:
    """Create or refresh ``hv.host``'s record from the hypervisor's facts; returns it."""
    facts = hv.node_facts()
    node = {} if facts is None else facts.to_dict()
    node.pop("free_memory_mib", None)  # changes by the second: not part of the record
    current = store.find_host(hv.host)
    if current is None:
        fresh = _apply(Host(hv.host, 0, 0), reg, node)
        store.put_host(fresh)
        store.emit("", "host.registered", host=hv.host, by=hv.host, vcpus=fresh.vcpus,
                   memory_mib=fresh.memory_mib, capacity_from=fresh.capacity_from)
        return fresh

    def mutate(host: Host) -> Host | None:
        before = host.to_dict()
        after = _apply(host, reg, node)
        return None if after.to_dict() == before else after

    updated = cas(store.r, store.keys.host(hv.host), Host, mutate,
                  extra=lambda pipe, h: changed(pipe, store.keys, "host", host=h.name))
    return updated or current
