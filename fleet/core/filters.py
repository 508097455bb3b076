"""Filters: may this host receive this VM? Each says yes/no fast and, when asked, why not.

A ``Filter`` pairs ``ok`` (the hot path: a bool, no strings built) with ``why`` (a
sentence for ``explain`` and for reports of VMs that fit nowhere). ``FILTERS`` lists them
in the order they are checked; cheap and selective ones first.

- state: only ``active`` hosts receive (hosts being evacuated are closed too);
- excluded: the VM's own host and any host the caller excludes;
- vcpu / memory / disk: free capacity (x allocation ratio, minus reserved memory, after
  VMs and in-flight claims) covers the request;
- numa: a pinned VM fits that many of the host's NUMA cells (hosts without cells pass);
- gpu: the host's devices serve the VM's GPUs (a share of one device, or whole devices);
- labels: the host carries every label the VM requires (aggregates);
- arch / cpu-model: the host's architecture matches and it offers the VM's CPU model;
- group: the VM's group rule (see ``fleet.core.planmodel``) holds if it lands here;
- preflight: the host offers what the guest's definition needs (its networks, bridges,
  machine type, usable CPU model, hugepages; a local disk needs a storage move), as the
  host's libvirt reported (``fleet.core.nodefacts``); a host that has not reported its
  facts is not checked here (the source agent checks again before migrating).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fleet.core.fleetstate import Demand, FleetState, demand_of
from fleet.core.nodefacts import shortfall
from fleet.core.planmodel import PlanVM, Rule


@dataclass
class Query:
    """One placement question: this VM (or gang), this demand, minus these hosts.

    ``checks`` are the host-trait filters that can reject a host for this VM (``ASKS``),
    chosen once per question so the hot path calls no filter that passes every host.
    """

    vm: PlanVM
    demand: Demand
    exclude: frozenset[int] = field(default_factory=frozenset)
    checks: tuple[Check, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        self.checks = tuple(f.ok for f in _TRAIT_FILTERS
                            if (asks := ASKS.get(f.name)) is None or asks(self))


Check = Callable[[FleetState, int, Query], bool]

#: What a VM must ask for before a filter can reject any host (others always run).
ASKS: dict[str, Callable[[Query], object]] = {
    "excluded": lambda q: q.exclude, "disk": lambda q: q.demand.disk,
    "numa": lambda q: q.vm.numa, "gpu": lambda q: q.demand.gpu,
    "group": lambda q: q.vm.group, "labels": lambda q: q.vm.required_labels,
    "arch": lambda q: q.vm.arch, "cpu-model": lambda q: q.vm.cpu_model,
}
Explain = Callable[[FleetState, int, Query], str]


@dataclass(frozen=True)
class Filter:
    """A named predicate with its explanation."""

    name: str
    ok: Check
    why: Explain


def _fmt_cpu(milli: int) -> str:
    return f"{milli / 1000:g}"


# --------------------------------------------------------------------- state / exclusion
def _state_ok(st: FleetState, i: int, q: Query) -> bool:
    return st.receiving[i]


def _state_why(st: FleetState, i: int, q: Query) -> str:
    state = st.hosts[i].state
    if state == "active":
        return "state: host is being evacuated in this plan"
    return f"state: host is {state}; only active hosts receive"


def _excluded_ok(st: FleetState, i: int, q: Query) -> bool:
    return i not in q.exclude


def _excluded_why(st: FleetState, i: int, q: Query) -> str:
    if st.hosts[i].name == q.vm.host:
        return "excluded: the VM's current host"
    return "excluded: on the exclusion list"


# --------------------------------------------------------------------- capacity
def _cpu_ok(st: FleetState, i: int, q: Query) -> bool:
    return st.free_cpu[i] >= q.demand.cpu


def _cpu_why(st: FleetState, i: int, q: Query) -> str:
    return (f"vcpu: needs {_fmt_cpu(q.demand.cpu)}, free {_fmt_cpu(st.free_cpu[i])} of "
            f"{_fmt_cpu(st.cap_cpu[i])} (allocation ratio "
            f"{st.config.cpu_allocation_ratio:g}, in-flight claims counted)")


def _mem_ok(st: FleetState, i: int, q: Query) -> bool:
    return st.free_mem[i] >= q.demand.mem


def _mem_why(st: FleetState, i: int, q: Query) -> str:
    return (f"memory: needs {q.demand.mem} MiB, free {st.free_mem[i]} of {st.cap_mem[i]} MiB "
            f"(allocation ratio {st.config.ram_allocation_ratio:g}, "
            f"reserved {st.config.reserved_host_memory_mib} MiB, in-flight claims counted)")


def _disk_ok(st: FleetState, i: int, q: Query) -> bool:
    return st.free_disk[i] >= q.demand.disk


def _disk_why(st: FleetState, i: int, q: Query) -> str:
    return f"disk: needs {q.demand.disk} GiB, free {st.free_disk[i]} of {st.cap_disk[i]} GiB"


# --------------------------------------------------------------------- NUMA cells, devices
def _numa_ok(st: FleetState, i: int, q: Query) -> bool:
    if q.demand.numa:  # one VM's demand
        return st.numa_fits(i, q.demand)
    return not q.vm.numa or st.numa_fits(i, demand_of(q.vm))  # a gang: its first VM


def _numa_why(st: FleetState, i: int, q: Query) -> str:
    vm, n = q.vm, len(st.cell_cpu[i])
    if vm.numa > n:
        return f"numa: VM is pinned to {vm.numa} NUMA nodes, host has {n}"
    free = ", ".join(f"{_fmt_cpu(c)} vCPUs/{m} MiB"
                     for c, m in zip(st.cell_cpu[i], st.cell_mem[i], strict=True))
    where = "one NUMA node" if vm.numa == 1 else f"each of {vm.numa} NUMA nodes"
    return (f"numa: VM needs {_fmt_cpu(-(-vm.cpu_milli // vm.numa))} vCPUs and "
            f"{-(-vm.memory_mib // vm.numa)} MiB on {where}, nodes have free {free}")


def _gpu_ok(st: FleetState, i: int, q: Query) -> bool:
    return not q.demand.gpu or st.gpu_fits(i, q.vm.gpu_milli, q.demand.gpu)


def _gpu_why(st: FleetState, i: int, q: Query) -> str:
    free = st.gpu_free[i]
    if not free:
        return f"gpu: VM needs {q.vm.gpus:g} GPU, host has none"
    if q.vm.gpu_milli < 1000:
        return (f"gpu: VM needs {q.vm.gpus:g} of one GPU, the freest of the host's "
                f"{len(free)} has {max(free) / 1000:g} free")
    return (f"gpu: VM needs {q.vm.gpus:g} whole GPUs, {free.count(1000)} of the host's "
            f"{len(free)} are free")


# --------------------------------------------------------------------- host traits
def _labels_ok(st: FleetState, i: int, q: Query) -> bool:
    labels = st.hosts[i].labels
    return all(labels.get(k) == v for k, v in q.vm.required_labels.items())


def _labels_why(st: FleetState, i: int, q: Query) -> str:
    labels = st.hosts[i].labels
    missing = [f"{k}={v}" for k, v in q.vm.required_labels.items() if labels.get(k) != v]
    return f"labels: host lacks {', '.join(missing)}"


def _arch_ok(st: FleetState, i: int, q: Query) -> bool:
    return not q.vm.arch or st.hosts[i].arch == q.vm.arch


def _arch_why(st: FleetState, i: int, q: Query) -> str:
    return f"arch: VM needs {q.vm.arch}, host is {st.hosts[i].arch or 'unknown'}"


def _model_ok(st: FleetState, i: int, q: Query) -> bool:
    return not q.vm.cpu_model or q.vm.cpu_model in st.hosts[i].cpu_models


def _model_why(st: FleetState, i: int, q: Query) -> str:
    offered = ", ".join(sorted(st.hosts[i].cpu_models)) or "none"
    return f"cpu-model: VM needs {q.vm.cpu_model}, host offers {offered}"


def _preflight_ok(st: FleetState, i: int, q: Query) -> bool:
    offered = st.hosts[i].offers
    return offered is None or offered.issuperset(q.vm.needs) \
        or not shortfall(q.vm.needs, offered)


def _preflight_why(st: FleetState, i: int, q: Query) -> str:
    offered = st.hosts[i].offers or frozenset()
    return f"preflight: {'; '.join(shortfall(q.vm.needs, offered))}"


# --------------------------------------------------------------------- groups
def _anti_ok(st: FleetState, i: int, vm: PlanVM) -> bool:
    return i not in st.group_hosts.get(vm.group, ())


def _affinity_ok(st: FleetState, i: int, vm: PlanVM) -> bool:
    hosts = st.group_hosts.get(vm.group)
    return not hosts or i in hosts


def _rack_affinity_ok(st: FleetState, i: int, vm: PlanVM) -> bool:
    racks = st.group_racks.get(vm.group)
    return not racks or st.rack_of[i] in racks


def _rack_anti_ok(st: FleetState, i: int, vm: PlanVM) -> bool:
    return st.rack_of[i] not in st.group_racks.get(vm.group, ())


def _fault_domain_ok(st: FleetState, i: int, vm: PlanVM) -> bool:
    doms = st.fault_domains.get((vm.group, st.rack_of[i]))
    return not doms or (len(doms) == 1 and vm.domain in doms)


_RULE_CHECKS: dict[str, Callable[[FleetState, int, PlanVM], bool]] = {
    Rule.ANTI_AFFINITY.value: _anti_ok,
    Rule.AFFINITY.value: _affinity_ok,
    Rule.RACK_AFFINITY.value: _rack_affinity_ok,
    Rule.RACK_ANTI_AFFINITY.value: _rack_anti_ok,
    Rule.FAULT_DOMAIN.value: _fault_domain_ok,
}


def _group_ok(st: FleetState, i: int, q: Query) -> bool:
    vm = q.vm
    if not vm.group:
        return True
    check = _RULE_CHECKS.get(vm.rule)
    return check is None or check(st, i, vm)


def _members(st: FleetState, group: str, where: Callable[[int], bool]) -> str:
    names = [vm.name for vm, h in st.placed.values() if vm.group == group and where(h)]
    shown = ", ".join(sorted(names)[:3]) + (" …" if len(names) > 3 else "")
    return shown or "?"


def _group_why(st: FleetState, i: int, q: Query) -> str:
    vm, rack = q.vm, st.rack_of[i]
    g = vm.group
    if vm.rule == Rule.ANTI_AFFINITY.value:
        return f"anti-affinity group {g}: host already holds {_members(st, g, lambda h: h == i)}"
    if vm.rule == Rule.AFFINITY.value:
        hosts = sorted(st.hosts[h].name for h in st.group_hosts.get(g, ()))
        return f"affinity group {g}: members run on {', '.join(hosts)}"
    if vm.rule == Rule.RACK_AFFINITY.value:
        racks = sorted(st.rack_names[r] for r in st.group_racks.get(g, ()))
        return f"rack-affinity group {g}: members are in rack {', '.join(racks)}"
    if vm.rule == Rule.RACK_ANTI_AFFINITY.value:
        held = _members(st, g, lambda h: st.rack_of[h] == rack)
        return f"rack-anti-affinity group {g}: rack {st.rack_names[rack]} holds {held}"
    doms = sorted(st.fault_domains.get((g, rack), ()))
    return (f"fault-domain group {g}: rack {st.rack_names[rack]} holds domain "
            f"{', '.join(d for d in doms if d != vm.domain)}, VM is domain {vm.domain}")


FILTERS: tuple[Filter, ...] = (
    Filter("state", _state_ok, _state_why),
    Filter("excluded", _excluded_ok, _excluded_why),
    Filter("memory", _mem_ok, _mem_why),
    Filter("vcpu", _cpu_ok, _cpu_why),
    Filter("disk", _disk_ok, _disk_why),
    Filter("numa", _numa_ok, _numa_why),
    Filter("gpu", _gpu_ok, _gpu_why),
    Filter("group", _group_ok, _group_why),
    Filter("labels", _labels_ok, _labels_why),
    Filter("arch", _arch_ok, _arch_why),
    Filter("cpu-model", _model_ok, _model_why),
    Filter("preflight", _preflight_ok, _preflight_why),
)


def passes(st: FleetState, i: int, q: Query) -> bool:
    """True when host ``i`` passes every filter for ``q`` (the hot path)."""
    return (st.receiving[i] and i not in q.exclude
            and st.free_mem[i] >= q.demand.mem and st.free_cpu[i] >= q.demand.cpu
            and st.free_disk[i] >= q.demand.disk
            and (not q.checks or all(ok(st, i, q) for ok in q.checks)))


_TRAIT_FILTERS = FILTERS[5:]


def rejections(st: FleetState, i: int, q: Query) -> list[str]:
    """Every reason host ``i`` is rejected for ``q`` (empty when it passes)."""
    return [f.why(st, i, q) for f in FILTERS if not f.ok(st, i, q)]


def reason_code(reason: str) -> str:
    """The filter name a reason starts with (``"memory: needs …"`` → ``"memory"``)."""
    head = reason.split(":", 1)[0]
    return head.split(" group ", 1)[0]
