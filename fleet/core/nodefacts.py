"""What a host is, as its hypervisor reports it, and what it offers to guests.

Pure: ``read_node`` turns libvirt's node info (``virNodeGetInfo``), host capabilities
XML, domain capabilities XML, free memory and the active networks into ``NodeFacts``;
``offers`` lists the tokens a guest's ``needs`` (``fleet.core.domainfacts``) are checked
against; ``shortfall`` says, one reason per missing token, why a host cannot take a guest.
The facts are stored as a plain dict on the host record (``Host.node``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class NumaCell:
    """One NUMA node of a host."""

    id: int
    cpus: int
    memory_mib: int
    hugepages: dict[str, int] = field(default_factory=dict)  # page size KiB -> pages


@dataclass(frozen=True)
class NodeFacts:
    """A host's hardware and what its hypervisor can run."""

    arch: str
    cpu_model: str
    cpus: int
    memory_mib: int
    mhz: int = 0
    sockets: int = 0
    cores: int = 0
    threads: int = 0
    cpu_vendor: str = ""
    cpu_features: tuple[str, ...] = ()
    free_memory_mib: int = 0
    numa_cells: tuple[NumaCell, ...] = ()
    machines: tuple[str, ...] = ()
    cpu_models: tuple[str, ...] = ()  # guest CPU models usable on this host
    networks: tuple[str, ...] = ()  # active libvirt networks
    bridges: tuple[str, ...] = ()  # bridges guests may attach to
    emulators: tuple[str, ...] = ()
    devices: dict[str, int] = field(default_factory=dict)  # e.g. {"gpu": 2}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeFacts:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        values["numa_cells"] = tuple(NumaCell(**c) for c in data.get("numa_cells", ()))
        for key in ("cpu_features", "machines", "cpu_models", "networks", "bridges",
                    "emulators"):
            values[key] = tuple(data.get(key, ()))
        return cls(**values)


def _cells(caps: ET.Element) -> tuple[NumaCell, ...]:
    cells = []
    for cell in caps.findall("host/topology/cells/cell"):
        memory = cell.find("memory")
        kib = int(memory.text or 0) if memory is not None else 0
        pages = {p.get("size", "0"): int(p.text or 0) for p in cell.findall("pages")
                 if p.get("size") != "4"}
        cells.append(NumaCell(id=int(cell.get("id", "0")), cpus=len(cell.findall("cpus/cpu")),
                              memory_mib=kib // 1024, hugepages=pages))
    return tuple(cells)


def _machines(caps: ET.Element, arch: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    machines: set[str] = set()
    emulators: set[str] = set()
    for guest in caps.findall("guest"):
        node = guest.find("arch")
        if node is None or node.get("name") != arch:
            continue
        emulators.update(e.text or "" for e in node.iter("emulator"))
        for machine in node.findall(".//machine"):
            machines.add((machine.text or "").strip())
            if machine.get("canonical"):
                machines.add(machine.get("canonical", ""))
    return tuple(sorted(m for m in machines if m)), tuple(sorted(e for e in emulators if e))


def usable_cpu_models(domcaps_xml: str) -> tuple[str, ...]:
    """Guest CPU models the host can run (``usable='yes'`` in domain capabilities)."""
    if not domcaps_xml:
        return ()
    root = ET.fromstring(domcaps_xml)
    return tuple(sorted({(m.text or "").strip() for m in root.findall(
        "cpu/mode[@name='custom']/model") if m.get("usable", "yes") == "yes"} - {""}))


def passthrough(device_xmls: Iterable[str]) -> dict[str, int]:
    """PCI devices ready for passthrough (bound to ``vfio-pci``), from node device XML:
    ``gpu`` for display controllers (class 0x03....), ``pci`` for the others."""
    counts: dict[str, int] = {}
    for text in device_xmls:
        root = ET.fromstring(text)
        if root.findtext("driver/name") != "vfio-pci":
            continue
        cls = root.findtext("capability[@type='pci']/class") or ""
        kind = "gpu" if cls.lower().startswith("0x03") else "pci"
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def read_node(info: Sequence[Any], caps_xml: str, *, domcaps_xml: str = "",
              free_memory_b: int = 0, networks: Iterable[str] = (),
              bridges: Iterable[str] = (), devices: dict[str, int] | None = None,
              ) -> NodeFacts:
    """``NodeFacts`` from ``virNodeGetInfo``'s list and the capabilities documents."""
    caps = ET.fromstring(caps_xml)
    cpu = caps.find("host/cpu")
    arch = (cpu.findtext("arch") if cpu is not None else None) or str(info[0])
    machines, emulators = _machines(caps, arch)
    return NodeFacts(
        arch=arch, cpu_model=(cpu.findtext("model") or "") if cpu is not None else "",
        cpu_vendor=(cpu.findtext("vendor") or "") if cpu is not None else "",
        cpu_features=tuple(sorted(f.get("name", "") for f in (
            cpu.findall("feature") if cpu is not None else ()))),
        cpus=int(info[2]), memory_mib=int(info[1]), mhz=int(info[3]),
        sockets=int(info[5]), cores=int(info[6]), threads=int(info[7]),
        free_memory_mib=int(free_memory_b) // (1024 * 1024),
        numa_cells=_cells(caps), machines=machines, emulators=emulators,
        cpu_models=usable_cpu_models(domcaps_xml),
        networks=tuple(sorted(networks)), bridges=tuple(sorted(bridges)),
        devices=dict(devices or {}),
    )


def offers(node: dict[str, Any]) -> frozenset[str]:
    """The tokens a host with facts ``node`` (a ``NodeFacts`` dict) offers; empty facts
    (a host that has not reported yet) offer nothing and are not checked."""
    out = {f"net:{n}" for n in node.get("networks", ())}
    out |= {f"bridge:{b}" for b in node.get("bridges", ())}
    out |= {f"machine:{m}" for m in node.get("machines", ())}
    out |= {f"cpu:{m}" for m in node.get("cpu_models", ())}
    out |= {f"emulator:{e}" for e in node.get("emulators", ())}
    if node.get("arch"):
        out.add(f"arch:{node['arch']}")
    for cell in node.get("numa_cells", ()):
        out |= {f"hugepages:{size}" for size, count in cell.get("hugepages", {}).items()
                if count > 0}
    return frozenset(out)


_WHY = {
    "net": "network {} is not active there",
    "bridge": "bridge {} does not exist there",
    "machine": "machine type {} is not supported there",
    "cpu": "CPU model {} is not usable there",
    "arch": "architecture {} is not supported there",
    "emulator": "emulator {} is not there",
    "hugepages": "no free hugepages of {} KiB there",
    "disk": "local disk {} is not shared (a storage move is needed)",
}


def shortfall(needs: Iterable[str], offered: frozenset[str]) -> list[str]:
    """One reason per need the host does not offer (empty: it can take the guest). Needs
    of a kind this version does not know (written by a newer agent) are not checked."""
    missing = []
    for token in needs:
        if token in offered:
            continue
        kind, _, value = token.partition(":")
        if kind in _WHY:
            missing.append(_WHY[kind].format(value))
    return missing
