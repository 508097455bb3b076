"""What a domain definition says about a guest, and what it needs of a host.

Pure: the hypervisor's own XML (libvirt's domain format) goes in, plain facts come out.
``read_domain`` gives the identity, size, disks (path, format, backing chain, shared or
not), interfaces (MAC, network or bridge), CPU mode and model, machine type, emulator,
hugepages, NUMA pinning and fleet's own attributes kept in the definition's
``<metadata>`` (so they survive a rebuild of the store from the hosts). ``needs`` turns
those facts into the tokens a destination must offer (``fleet.core.nodefacts``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from typing import Any

from fleet.core.errors import InvalidInput
from fleet.core.models import VM

FLEET_NS = "https://fleet.dev/xmlns/vm/1"
"""Namespace of fleet's element in a domain's ``<metadata>``."""

ET.register_namespace("fleet", FLEET_NS)
SHARED_DISK_TYPES = frozenset({"network"})  # rbd, iscsi, nbd, gluster: shared by nature


@dataclass(frozen=True)
class Disk:
    """One disk of a guest."""

    target: str
    path: str
    format: str = ""
    device: str = "disk"
    backing: tuple[str, ...] = ()
    shared: bool = False


@dataclass(frozen=True)
class Nic:
    """One network interface of a guest."""

    mac: str
    network: str = ""
    bridge: str = ""
    model: str = ""


@dataclass(frozen=True)
class DomainFacts:
    """A guest as its definition describes it."""

    name: str
    uuid: str
    vcpus: int
    memory_mib: int
    arch: str = ""
    machine: str = ""
    emulator: str = ""
    virt_type: str = ""
    cpu_mode: str = ""
    cpu_model: str = ""
    cpu_check: str = ""  # libvirt's check of the guest CPU: none, partial, full
    hugepages_kib: int = 0  # 0: no hugepages asked for
    numa_cells: int = 0  # guest NUMA cells; pinned to one host node when nodeset is one
    numa_pinned: bool = False
    disks: tuple[Disk, ...] = ()
    nics: tuple[Nic, ...] = ()
    hostdevs: int = 0  # PCI devices passed through (GPUs and others)
    attrs: dict[str, str] = field(default_factory=dict)  # fleet's metadata element

    def devices(self) -> dict[str, Any]:
        """Disks and interfaces as the JSON shape of a VM record."""
        return {"disks": [asdict(d) | {"backing": list(d.backing)} for d in self.disks],
                "nics": [asdict(n) for n in self.nics], "hostdevs": self.hostdevs,
                "numa": 1 if self.numa_pinned else 0}


def _text(node: ET.Element | None, default: str = "") -> str:
    return (node.text or "").strip() if node is not None else default


_UNITS = {"b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "kb": 1000 / 1024,
          "m": 1024, "mib": 1024, "mb": 1000**2 / 1024, "g": 1024**2, "gib": 1024**2,
          "gb": 1000**3 / 1024}


def _to_kib(value: str, unit: str) -> int:
    try:
        return round(float(value) * _UNITS.get(unit.lower(), 1))
    except ValueError:
        return 0


def _kib(node: ET.Element | None) -> int:
    return 0 if node is None else _to_kib(_text(node), node.get("unit", "KiB"))


def _backing(disk: ET.Element) -> tuple[str, ...]:
    chain: list[str] = []
    store = disk.find("backingStore")
    while store is not None and store.find("source") is not None:
        source = store.find("source")
        assert source is not None
        chain.append(source.get("file") or source.get("dev") or source.get("name") or "")
        store = store.find("backingStore")
    return tuple(chain)


def _disk(node: ET.Element, shared_prefixes: tuple[str, ...]) -> Disk | None:
    source = node.find("source")
    kind = node.get("type", "file")
    path = "" if source is None else (
        source.get("file") or source.get("dev") or source.get("name") or "")
    if not path and kind != "network":
        return None  # an empty CD-ROM drive
    driver = node.find("driver")
    target = node.find("target")
    shared = kind in SHARED_DISK_TYPES or node.find("shareable") is not None or any(
        path.startswith(p) for p in shared_prefixes)
    return Disk(target="" if target is None else target.get("dev", ""), path=path,
                format="" if driver is None else driver.get("type", ""),
                device=node.get("device", "disk"), backing=_backing(node), shared=shared)


def _nic(node: ET.Element) -> Nic:
    source = node.find("source")
    mac = node.find("mac")
    model = node.find("model")
    kind = node.get("type", "")
    src = {} if source is None else dict(source.attrib)
    return Nic(mac="" if mac is None else mac.get("address", "").lower(),
               network=src.get("network", "") if kind == "network" else "",
               bridge=src.get("bridge", "") if kind == "bridge" else "",
               model="" if model is None else model.get("type", ""))


def _attrs(root: ET.Element) -> dict[str, str]:
    node = root.find(f"metadata/{{{FLEET_NS}}}vm")
    return {} if node is None else {k: v for k, v in node.attrib.items() if v}


def _numa(root: ET.Element) -> tuple[int, bool]:
    cells = len(root.findall("cpu/numa/cell"))
    memory = root.find("numatune/memory")
    nodeset = "" if memory is None else memory.get("nodeset", "")
    pinned = bool(nodeset) and "," not in nodeset and "-" not in nodeset
    return cells, pinned


def read_domain(xml: str, shared_prefixes: tuple[str, ...] = ()) -> DomainFacts:
    """The facts of a domain definition; ``InvalidInput`` if it is not one.

    A disk counts as shared when it is a network disk, marked shareable, or its path
    lies under one of ``shared_prefixes`` (storage every host mounts).
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise InvalidInput(f"domain definition is not XML: {exc}") from None
    if root.tag != "domain":
        raise InvalidInput(f"not a domain definition: <{root.tag}>")
    ostype, cpu = root.find("os/type"), root.find("cpu")
    hugepages = root.find("memoryBacking/hugepages")
    page = None if hugepages is None else hugepages.find("page")
    cells, pinned = _numa(root)
    disks = (_disk(d, shared_prefixes) for d in root.findall("devices/disk"))
    return DomainFacts(
        name=_text(root.find("name")), uuid=_text(root.find("uuid")),
        vcpus=int(_text(root.find("vcpu"), "1") or 1),
        memory_mib=_kib(root.find("memory")) // 1024,
        arch="" if ostype is None else ostype.get("arch", ""),
        machine="" if ostype is None else ostype.get("machine", ""),
        emulator=_text(root.find("devices/emulator")), virt_type=root.get("type", ""),
        cpu_mode="" if cpu is None else cpu.get("mode", "custom" if cpu.find("model")
                                                 is not None else ""),
        cpu_model=_text(root.find("cpu/model")),
        cpu_check="" if cpu is None else cpu.get("check", ""),
        hugepages_kib=0 if hugepages is None else (_kib_page(page) or 2048),
        numa_cells=cells, numa_pinned=pinned,
        disks=tuple(d for d in disks if d is not None),
        nics=tuple(_nic(n) for n in root.findall("devices/interface")),
        hostdevs=len(root.findall("devices/hostdev[@type='pci']")),
        attrs=_attrs(root),
    )


def _kib_page(page: ET.Element | None) -> int:
    return 0 if page is None else _to_kib(page.get("size", "0"), page.get("unit", "KiB"))


def needs(facts: DomainFacts) -> list[str]:
    """What a host must offer to run this guest, as tokens (see ``fleet.core.nodefacts``).

    ``net:N`` an active network, ``bridge:B`` a bridge, ``machine:M`` a machine type,
    ``emulator:PATH`` the emulator binary, ``arch:A``, ``cpu:MODEL`` a usable CPU model
    (custom mode, unless libvirt is told not to check it: ``check='none'``, as for the
    default model), ``hugepages:KIB``,
    ``disk:PATH`` a local (not shared) disk: only a storage move could take it along.
    """
    out = {f"net:{n.network}" for n in facts.nics if n.network}
    out |= {f"bridge:{n.bridge}" for n in facts.nics if n.bridge}
    if facts.machine:
        out.add(f"machine:{facts.machine}")
    if facts.arch:
        out.add(f"arch:{facts.arch}")
    if facts.emulator:
        out.add(f"emulator:{facts.emulator}")
    if facts.cpu_mode == "custom" and facts.cpu_model and facts.cpu_check != "none":
        out.add(f"cpu:{facts.cpu_model}")
    if facts.hugepages_kib:
        out.add(f"hugepages:{facts.hugepages_kib}")
    out |= {f"disk:{d.path}" for d in facts.disks if not d.shared and d.device == "disk"}
    return sorted(out)


def vm_attrs(ha: bool, priority: int, group: str, rule: str) -> dict[str, str]:
    """fleet's attributes of a VM as its metadata element carries them."""
    attrs = {"ha": "yes" if ha else "no", "priority": str(priority)}
    return attrs | {k: v for k, v in (("group", group), ("rule", rule)) if v}


def take_definition(vm: VM, xml: str, facts: DomainFacts) -> VM:
    """``vm`` with ``xml`` as its stored definition and what it says: size, devices,
    needs (``facts`` is ``read_domain(xml)``)."""
    vm.definition, vm.devices, vm.needs = xml, facts.devices(), needs(facts)
    vm.vcpus = facts.vcpus or vm.vcpus
    vm.memory_mib = facts.memory_mib or vm.memory_mib
    return vm


def metadata_xml(attrs: dict[str, str]) -> str:
    """fleet's metadata element for a definition (``ha``, ``priority``, ``group``, ...)."""
    node = ET.Element("fleet:vm", {"xmlns:fleet": FLEET_NS})
    for key, value in sorted(attrs.items()):
        node.set(key, value)
    return ET.tostring(node, encoding="unicode")


def with_metadata(xml: str, attrs: dict[str, str]) -> str:
    """``xml`` with fleet's metadata element set to ``attrs`` (others kept)."""
    root = ET.fromstring(xml)
    meta = root.find("metadata")
    if meta is None:
        meta = ET.SubElement(root, "metadata")
    for old in meta.findall(f"{{{FLEET_NS}}}vm"):
        meta.remove(old)
    meta.append(ET.fromstring(metadata_xml(attrs)))
    return ET.tostring(root, encoding="unicode")
