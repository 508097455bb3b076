"""Baselines for the placement benchmark, written independently of ``fleet.core``.

They share nothing with the engine but the input records (``PlanHost``/``PlanVM``), so
they also serve as an independent check. Each obeys the same hard rules (capacity at
allocation ratio 1, only active hosts, the five group rules) with its own code:

- ``first_fit_decreasing``: requests sorted by dominant share, largest first; each goes to
  the first host (in file order) that can take it.
- ``best_fit``: requests in order; each goes to the host left with the least normalised
  free capacity (vCPU + memory shares) after placing it.
- ``dot_product``: requests in order; the host maximising the dot product of the
  request and the host's free vector, both normalised by the host's capacity.
- ``nova_style``: OpenStack Nova's FilterScheduler loop: per request, build host states,
  run each filter over the whole host list, then each weigher over the survivors with
  min-max normalisation and multipliers (RAM and CPU weighers, spread, 1.0), take the top.

``verify`` counts overcommitted hosts and group-rule violations of a final placement.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from fleet.core.planmodel import PlanHost, PlanVM

Placement = dict[str, str]  # vm name -> host name


def _milli(vcpus: float) -> int:
    return round(vcpus * 1000)


@dataclass
class Simple:
    """Free capacity and group membership, dictionaries only."""

    hosts: Sequence[PlanHost]
    cap_cpu: dict[str, int] = field(default_factory=dict)
    cap_mem: dict[str, int] = field(default_factory=dict)
    free_cpu: dict[str, int] = field(default_factory=dict)
    free_mem: dict[str, int] = field(default_factory=dict)
    rack: dict[str, str] = field(default_factory=dict)
    members: dict[str, list[tuple[str, PlanVM]]] = field(default_factory=lambda: defaultdict(list))

    def __post_init__(self) -> None:
        for h in self.hosts:
            self.cap_cpu[h.name] = self.free_cpu[h.name] = _milli(h.vcpus)
            self.cap_mem[h.name] = self.free_mem[h.name] = h.memory_mib
            self.rack[h.name] = h.rack or h.name

    def add(self, vm: PlanVM, host: str) -> None:
        self.free_cpu[host] -= _milli(vm.vcpus)
        self.free_mem[host] -= vm.memory_mib
        if vm.group:
            self.members[vm.group].append((host, vm))

    def remove(self, vm: PlanVM, host: str) -> None:
        self.free_cpu[host] += _milli(vm.vcpus)
        self.free_mem[host] += vm.memory_mib
        if vm.group:
            self.members[vm.group].remove((host, vm))

    def capacity_ok(self, h: PlanHost, vm: PlanVM) -> bool:
        return (h.state == "active" and self.free_cpu[h.name] >= _milli(vm.vcpus)
                and self.free_mem[h.name] >= vm.memory_mib)

    def rule_ok(self, h: PlanHost, vm: PlanVM) -> bool:
        if not vm.group or not self.members.get(vm.group):
            return True
        others = self.members[vm.group]
        rack = self.rack[h.name]
        if vm.rule == "affinity":
            return all(o == h.name for o, _ in others)
        if vm.rule == "anti-affinity":
            return all(o != h.name for o, _ in others)
        if vm.rule == "rack-affinity":
            return all(self.rack[o] == rack for o, _ in others)
        if vm.rule == "rack-anti-affinity":
            return all(self.rack[o] != rack for o, _ in others)
        return all(self.rack[o] != rack or m.domain == vm.domain for o, m in others)

    def fits(self, h: PlanHost, vm: PlanVM, banned: Iterable[str] = ()) -> bool:
        return h.name not in banned and self.capacity_ok(h, vm) and self.rule_ok(h, vm)


def _share(s: Simple, vm: PlanVM) -> float:
    top_cpu, top_mem = max(s.cap_cpu.values()), max(s.cap_mem.values())
    return max(_milli(vm.vcpus) / top_cpu, vm.memory_mib / top_mem)


Chooser = Callable[[Simple, PlanVM, set[str]], "str | None"]


def _first_fit(s: Simple, vm: PlanVM, banned: set[str]) -> str | None:
    return next((h.name for h in s.hosts if s.fits(h, vm, banned)), None)


def _best_fit(s: Simple, vm: PlanVM, banned: set[str]) -> str | None:
    best, best_h = float("inf"), None
    c, m = _milli(vm.vcpus), vm.memory_mib
    for h in s.hosts:
        if s.fits(h, vm, banned):
            left = ((s.free_cpu[h.name] - c) / max(1, s.cap_cpu[h.name])
                    + (s.free_mem[h.name] - m) / max(1, s.cap_mem[h.name]))
            if left < best:
                best, best_h = left, h.name
    return best_h


def _dot(s: Simple, vm: PlanVM, banned: set[str]) -> str | None:
    best, best_h = float("-inf"), None
    c, m = _milli(vm.vcpus), vm.memory_mib
    for h in s.hosts:
        if s.fits(h, vm, banned):
            cc, cm = max(1, s.cap_cpu[h.name]), max(1, s.cap_mem[h.name])
            d = c * s.free_cpu[h.name] / (cc * cc) + m * s.free_mem[h.name] / (cm * cm)
            if d > best:
                best, best_h = d, h.name
    return best_h


# --------------------------------------------------------------------- Nova-style
@dataclass
class HostState:
    """Nova's per-request host view."""

    host: PlanHost
    free_ram_mb: int
    free_vcpus_milli: int
    rack: str


class Filter:
    def filter_all(self, hosts: list[HostState], vm: PlanVM, s: Simple,
                   banned: set[str]) -> list[HostState]:
        return [h for h in hosts if self.host_passes(h, vm, s, banned)]

    def host_passes(self, h: HostState, vm: PlanVM, s: Simple, banned: set[str]) -> bool:
        raise NotImplementedError


class ComputeFilter(Filter):
    def host_passes(self, h: HostState, vm: PlanVM, s: Simple, banned: set[str]) -> bool:
        return h.host.state == "active" and h.host.name not in banned


class RamFilter(Filter):
    def host_passes(self, h: HostState, vm: PlanVM, s: Simple, banned: set[str]) -> bool:
        return h.free_ram_mb >= vm.memory_mib


class CoreFilter(Filter):
    def host_passes(self, h: HostState, vm: PlanVM, s: Simple, banned: set[str]) -> bool:
        return h.free_vcpus_milli >= _milli(vm.vcpus)


class ServerGroupFilter(Filter):
    def host_passes(self, h: HostState, vm: PlanVM, s: Simple, banned: set[str]) -> bool:
        return s.rule_ok(h.host, vm)


class Weigher:
    multiplier = 1.0

    def weigh(self, h: HostState) -> float:
        raise NotImplementedError


class RAMWeigher(Weigher):
    def weigh(self, h: HostState) -> float:
        return float(h.free_ram_mb)


class CPUWeigher(Weigher):
    def weigh(self, h: HostState) -> float:
        return float(h.free_vcpus_milli)


NOVA_FILTERS: tuple[Filter, ...] = (ComputeFilter(), RamFilter(), CoreFilter(),
                                    ServerGroupFilter())
NOVA_WEIGHERS: tuple[Weigher, ...] = (RAMWeigher(), CPUWeigher())


def _normalise(values: list[float]) -> list[float]:
    lo, hi = min(values), max(values)
    return [0.0] * len(values) if hi == lo else [(v - lo) / (hi - lo) for v in values]


def _nova(s: Simple, vm: PlanVM, banned: set[str]) -> str | None:
    hosts = [HostState(h, s.free_mem[h.name], s.free_cpu[h.name], s.rack[h.name])
             for h in s.hosts]
    for f in NOVA_FILTERS:
        hosts = f.filter_all(hosts, vm, s, banned)
        if not hosts:
            return None
    total = [0.0] * len(hosts)
    for w in NOVA_WEIGHERS:
        for k, v in enumerate(_normalise([w.weigh(h) for h in hosts])):
            total[k] += w.multiplier * v
    best = max(range(len(hosts)), key=lambda k: (total[k], -k))
    return hosts[best].host.name


# --------------------------------------------------------------------- runners
BASELINES: dict[str, tuple[Chooser, bool]] = {
    "first-fit-decreasing": (_first_fit, True),
    "best-fit": (_best_fit, False),
    "dot-product": (_dot, False),
    "nova-style": (_nova, False),
}


def place(name: str, hosts: Sequence[PlanHost], requests: Sequence[PlanVM],
          running: Sequence[PlanVM] = ()) -> Placement:
    """Place ``requests`` with baseline ``name``; returns the accepted ones."""
    choose, decreasing = BASELINES[name]
    s = Simple(hosts)
    for vm in running:
        s.add(vm, vm.host)
    order = sorted(requests, key=lambda v: (-_share(s, v), v.name)) if decreasing else requests
    out: Placement = {}
    for vm in order:
        host = choose(s, vm, set())
        if host is not None:
            s.add(vm, host)
            out[vm.name] = host
    return out


def prepare(hosts: Sequence[PlanHost], vms: Sequence[PlanVM],
            source: str) -> tuple[Simple, list[PlanVM]]:
    """Baseline state with the VMs of ``source`` lifted off it (the drain's input)."""
    s = Simple(hosts)
    for vm in vms:
        s.add(vm, vm.host)
    lifted = [vm for vm in vms if vm.host == source]
    for vm in lifted:
        s.remove(vm, source)
    return s, lifted


def drain_plan(name: str, s: Simple, lifted: Sequence[PlanVM], source: str) -> Placement:
    """Re-place ``lifted`` with baseline ``name`` (largest first); mutates ``s``."""
    choose, _ = BASELINES[name]
    out: Placement = {}
    for vm in sorted(lifted, key=lambda v: (-_share(s, v), v.name)):
        host = choose(s, vm, {source})
        if host is not None:
            s.add(vm, host)
            out[vm.name] = host
    return out


def drain(name: str, hosts: Sequence[PlanHost], vms: Sequence[PlanVM], source: str) -> Placement:
    """Re-place every VM of ``source`` with baseline ``name`` (largest first)."""
    s, lifted = prepare(hosts, vms, source)
    return drain_plan(name, s, lifted, source)


# --------------------------------------------------------------------- verification
def verify(hosts: Sequence[PlanHost], vms: Sequence[PlanVM], where: Placement) -> dict[str, int]:
    """Overcommitted hosts and violated group rules (pairs of members) of a placement."""
    rack = {h.name: h.rack or h.name for h in hosts}
    used: Counter[str] = Counter()
    mem: Counter[str] = Counter()
    groups: dict[str, list[tuple[str, PlanVM]]] = defaultdict(list)
    for vm in vms:
        host = where.get(vm.name)
        if host is None:
            continue
        used[host] += _milli(vm.vcpus)
        mem[host] += vm.memory_mib
        if vm.group:
            groups[vm.group].append((host, vm))
    over = sum(1 for h in hosts if used[h.name] > _milli(h.vcpus) or mem[h.name] > h.memory_mib)
    bad = sum(_pair_violations(members, rack) for members in groups.values())
    return {"overcommitted_hosts": over, "rule_violations": bad}


def _pair_violations(members: list[tuple[str, PlanVM]], rack: dict[str, str]) -> int:
    bad = 0
    for k, (h1, a) in enumerate(members):
        for h2, b in members[k + 1:]:
            same_host, same_rack = h1 == h2, rack[h1] == rack[h2]
            bad += {"affinity": not same_host, "anti-affinity": same_host,
                    "rack-affinity": not same_rack, "rack-anti-affinity": same_rack,
                    "fault-domain": same_rack and a.domain != b.domain}.get(a.rule, False)
    return bad
