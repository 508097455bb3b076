"""Planning inputs: the hosts and VMs the placement engine reasons about.

``PlanHost`` and ``PlanVM`` carry what placement needs and nothing else (no addresses,
no definitions): capacity, state, labels, rack, architecture, CPU models, and for VMs the
group rule they obey. They are built from the store's ``Host``/``VM`` records with
``plan_host``/``plan_vm`` or read from inventory files by ``fleet.planfiles``.

Group rules (``PlanVM.rule``, the group is ``PlanVM.group``):

- ``affinity``: every member on one host;
- ``anti-affinity``: no two members on one host;
- ``rack-affinity``: every member in one rack;
- ``rack-anti-affinity``: no two members in one rack;
- ``fault-domain``: members of different ``domain`` values never share a rack (members of
  one domain may).

NUMA and devices: a host may list its NUMA cells (``PlanHost.numa_cells``, each with its
vCPUs and memory; they add up to the host's) and its GPUs (``PlanHost.gpus``, whole
devices). ``PlanVM.numa`` is how many cells a guest is pinned to: 0 floats (only the
host's totals count), 1 must fit one cell, 2 (or more) takes an even share on each of that
many distinct cells. ``PlanVM.gpus`` below 1 is a share of one device (a vGPU), 1 or more
is that many whole devices. A host without cells does not check pinning. A placed VM may
say which cells and devices it holds (``cells``, ``devices``); else the engine picks them.

A host without a rack is its own rack. Internally vCPUs are counted in milli-vCPUs so
fractional requests add and subtract exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from fleet.core.models import VM, Host, HostState
from fleet.core.nodefacts import offers


class Rule(StrEnum):
    """How the members of a group are placed relative to each other."""

    NONE = ""
    AFFINITY = "affinity"
    ANTI_AFFINITY = "anti-affinity"
    RACK_AFFINITY = "rack-affinity"
    RACK_ANTI_AFFINITY = "rack-anti-affinity"
    FAULT_DOMAIN = "fault-domain"


RULES = frozenset(r.value for r in Rule)

#: Preset weigher multipliers: spread keeps headroom everywhere, stack fills hosts up; in a
#: fleet with GPUs both first keep each host's vCPUs in proportion to its free GPUs.
SPREAD: Mapping[str, float] = {"ram": 1.0, "cpu": 1.0, "gpu": 30.0}
STACK: Mapping[str, float] = {"ram": -1.0, "cpu": -1.0, "gpu": 30.0}
PRESETS: Mapping[str, Mapping[str, float]] = {"spread": SPREAD, "stack": STACK}


@dataclass(frozen=True)
class NumaCell:
    """One NUMA node of a host: its vCPUs and memory."""

    vcpus: float
    memory_mib: int


@dataclass(frozen=True)
class PlanHost:
    """A host as placement sees it. ``disk_gib`` None means disk is not tracked."""

    name: str
    vcpus: float
    memory_mib: int
    disk_gib: int | None = None
    state: str = HostState.ACTIVE.value
    labels: Mapping[str, str] = field(default_factory=dict)
    rack: str = ""
    arch: str = ""
    cpu_models: frozenset[str] = frozenset()
    offers: frozenset[str] | None = None  # pre-flight tokens; None: facts not reported
    numa_cells: tuple[NumaCell, ...] = ()  # empty: NUMA layout unknown, not checked
    gpus: int = 0  # whole devices (GPUs or other passthrough PCI devices)


@dataclass(frozen=True)
class PlanVM:
    """A VM (placed when ``host`` is set) or a request for one (``host`` empty)."""

    name: str
    vcpus: float
    memory_mib: int
    disk_gib: int = 0
    host: str = ""
    group: str = ""
    rule: str = Rule.NONE.value
    domain: str = ""
    required_labels: Mapping[str, str] = field(default_factory=dict)
    arch: str = ""
    cpu_model: str = ""
    needs: frozenset[str] = frozenset()  # pre-flight tokens of its definition
    numa: int = 0  # NUMA cells it is pinned to (0: floats)
    gpus: float = 0.0  # < 1: a share of one device; >= 1: whole devices
    cells: tuple[int, ...] = ()  # for a placed VM: the cells it is pinned to (indexes)
    devices: tuple[int, ...] = ()  # for a placed VM: the devices it holds (indexes)

    @property
    def cpu_milli(self) -> int:
        return milli(self.vcpus)

    @property
    def gpu_milli(self) -> int:
        return milli(self.gpus)


@dataclass(frozen=True)
class PlacementConfig:
    """Allocation ratios, reserved host memory and the weigher multipliers.

    Capacity of a host = physical x ratio (memory: minus ``reserved_host_memory_mib``).
    ``weights`` maps weigher names (``cpu``, ``ram``, ``disk``, ``balance``, ``gpu``) to
    multipliers; positive spreads, negative stacks (``gpu``: see ``fleet.core.weighers``).
    """

    cpu_allocation_ratio: float = 1.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    reserved_host_memory_mib: int = 0
    weights: Mapping[str, float] = field(default_factory=lambda: dict(SPREAD))


def milli(vcpus: float) -> int:
    """vCPUs as integer milli-vCPUs (0.5 → 500)."""
    return round(vcpus * 1000)


def _split_csv(text: str) -> frozenset[str]:
    return frozenset(p.strip() for p in text.split(",") if p.strip())


def plan_host(host: Host) -> PlanHost:
    """The planning view of a stored host; rack/arch/cpu_models come from its labels."""
    labels = dict(host.labels)
    return PlanHost(
        name=host.name, vcpus=float(host.vcpus), memory_mib=host.memory_mib,
        state=host.state, labels=labels, rack=labels.get("rack", ""),
        arch=labels.get("arch", ""), cpu_models=_split_csv(labels.get("cpu_models", "")),
        offers=offers(host.node) if host.node else None,
        numa_cells=node_cells(host), gpus=node_devices(host.node),
    )


def node_cells(host: Host) -> tuple[NumaCell, ...]:
    """The NUMA cells libvirt reported for ``host``, when its capacity is the node's own
    and they add up to it (a configured capacity has no cells: pinning is not checked)."""
    cells = [NumaCell(float(c.get("cpus", 0)), int(c.get("memory_mib", 0)))
             for c in host.node.get("numa_cells", ())]
    short = host.memory_mib - sum(c.memory_mib for c in cells)  # KiB per cell, rounded down
    if host.capacity_from != "node" or len(cells) < 2 or not 0 <= short <= len(cells) \
            or sum(c.vcpus for c in cells) != host.vcpus:
        return ()
    cells[-1] = NumaCell(cells[-1].vcpus, cells[-1].memory_mib + short)
    return tuple(cells)


def node_devices(node: Mapping[str, object]) -> int:
    """Passthrough devices (GPUs and other PCI devices) libvirt reported for a host."""
    devices = node.get("devices")
    return sum(int(v) for v in devices.values()) if isinstance(devices, dict) else 0


def plan_vm(vm: VM, rule: str = "") -> PlanVM:
    """The planning view of a stored VM; ``rule`` applies to ``vm.group`` when set.

    Without a rule a named group means anti-affinity (the safe reading of "keep apart").
    """
    if vm.group and not rule:
        rule = vm.rule or Rule.ANTI_AFFINITY.value
    return PlanVM(
        name=vm.name, vcpus=float(vm.vcpus), memory_mib=vm.memory_mib, host=vm.host,
        group=vm.group, rule=rule if vm.group else Rule.NONE.value,
        needs=frozenset(vm.needs), numa=int(vm.devices.get("numa", 0)),
        gpus=float(vm.devices.get("hostdevs", 0)),
    )
