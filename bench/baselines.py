"""Baselines for the placement benchmark, written independently of ``fleet.core``.

They share nothing with the engine but the input records (``PlanHost``/``PlanVM``), so
they also serve as an independent check. Each obeys the same hard rules (capacity at
allocation ratio 1, only active hosts, the five group rules, NUMA pinning and devices)
with its own code. Inside a host every baseline takes NUMA cells and devices first fit,
in index order, as Nova's ``numa_fit_instance_to_host`` tries host cells: a guest pinned
to ``n`` cells takes the first ``n`` cells that each hold an ``n``-th of it; a share of a
GPU goes on the first device with that much left, whole GPUs on the first wholly free ones.

- ``first_fit_decreasing``: requests sorted by dominant share, largest first; each goes to
  the first host (in file order) that can take it.
- ``best_fit``: requests in order; each goes to the host left with the least normalised
  free capacity (vCPU + memory shares) after placing it.
- ``dot_product``: requests in order; the host maximising the dot product of the
  request and the host's free vector, both normalised by the host's capacity.
- ``nova_style``: OpenStack Nova's FilterScheduler loop: per request, build host states,
  run each filter over the whole host list, then each weigher over the survivors with
  min-max normalisation and multipliers (RAM and CPU weighers, spread, 1.0), take the top.

``verify`` counts overcommitted hosts, group-rule violations, and overcommitted NUMA
cells and devices (or pinned or GPU VMs without valid cells or devices) of a placement.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from fleet.core.planmodel import PlanHost, PlanVM

Placement = dict[str, str]  # vm name -> host name
Slots = dict[str, tuple[tuple[int, ...], tuple[int, ...]]]  # vm name -> (cells, devices)
WHOLE = 1000


def _milli(vcpus: float) -> int:
    return round(vcpus * 1000)


def _split(total: int, n: int) -> list[int]:
    """``total`` in ``n`` even parts, the first ones one larger while a remainder lasts."""
    return [total // n + (1 if k < total % n else 0) for k in range(n)]


def _device_need(vm: PlanVM) -> tuple[int, int]:
    """(devices, milli each) a VM's GPUs take: a share of one, or whole ones."""
    g = _milli(vm.gpus)
    return (1, g) if g < WHOLE else ((g + WHOLE - 1) // WHOLE, WHOLE)


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
    cells: dict[str, list[list[int]]] = field(default_factory=dict)  # [free cpu, free mem]
    devices: dict[str, list[int]] = field(default_factory=dict)  # free milli per device
    slots: Slots = field(default_factory=dict)

    def __post_init__(self) -> None:
        for h in self.hosts:
            self.cap_cpu[h.name] = self.free_cpu[h.name] = _milli(h.vcpus)
            self.cap_mem[h.name] = self.free_mem[h.name] = h.memory_mib
            self.rack[h.name] = h.rack or h.name
            self.cells[h.name] = [[_milli(c.vcpus), c.memory_mib] for c in h.numa_cells]
            self.devices[h.name] = [WHOLE] * h.gpus

    def pick_cells(self, host: str, vm: PlanVM) -> tuple[int, ...] | None:
        """First ``vm.numa`` cells that each hold their share; () when not checked."""
        cells = self.cells[host]
        if not vm.numa or not cells:
            return ()
        n = vm.numa
        c, m = -(-_milli(vm.vcpus) // n), -(-vm.memory_mib // n)
        got = tuple(k for k, (fc, fm) in enumerate(cells) if fc >= c and fm >= m)[:n]
        return got if len(got) == n else None

    def pick_devices(self, host: str, vm: PlanVM) -> tuple[int, ...] | None:
        """First devices with room for the VM's GPUs; () when it needs none."""
        if not vm.gpus:
            return ()
        count, each = _device_need(vm)
        got = tuple(k for k, f in enumerate(self.devices[host]) if f >= each)[:count]
        return got if len(got) == count else None

    def _hold(self, vm: PlanVM, host: str, slot: tuple[tuple[int, ...], tuple[int, ...]],
              sign: int) -> None:
        cells, devices = slot
        n = len(cells) or 1
        for cell, c, m in zip(cells, _split(_milli(vm.vcpus), n), _split(vm.memory_mib, n),
                              strict=False):
            self.cells[host][cell][0] -= sign * c
            self.cells[host][cell][1] -= sign * m
        for d in devices:
            self.devices[host][d] -= sign * _device_need(vm)[1]

    def add(self, vm: PlanVM, host: str) -> None:
        self.free_cpu[host] -= _milli(vm.vcpus)
        self.free_mem[host] -= vm.memory_mib
        if vm.group:
            self.members[vm.group].append((host, vm))
        cells = vm.cells if vm.host == host and vm.cells else self.pick_cells(host, vm)
        devices = vm.devices if vm.host == host and vm.devices else self.pick_devices(host, vm)
        slot = (cells or (), devices or ())
        if slot != ((), ()):
            self.slots[vm.name] = slot
            self._hold(vm, host, slot, +1)

    def remove(self, vm: PlanVM, host: str) -> None:
        self.free_cpu[host] += _milli(vm.vcpus)
        self.free_mem[host] += vm.memory_mib
        if vm.group:
            self.members[vm.group].remove((host, vm))
        slot = self.slots.pop(vm.name, None)
        if slot is not None:
            self._hold(vm, host, slot, -1)

    def capacity_ok(self, h: PlanHost, vm: PlanVM) -> bool:
        return (h.state == "active" and self.free_cpu[h.name] >= _milli(vm.vcpus)
                and self.free_mem[h.name] >= vm.memory_mib
                and self.pick_cells(h.name, vm) is not None
                and self.pick_devices(h.name, vm) is not None)

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


class NUMATopologyFilter(Filter):
    def host_passes(self, h: HostState, vm: PlanVM, s: Simple, banned: set[str]) -> bool:
        return s.pick_cells(h.host.name, vm) is not None


class PciPassthroughFilter(Filter):
    def host_passes(self, h: HostState, vm: PlanVM, s: Simple, banned: set[str]) -> bool:
        return s.pick_devices(h.host.name, vm) is not None


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
                                    NUMATopologyFilter(), PciPassthroughFilter(),
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
          running: Sequence[PlanVM] = ()) -> tuple[Placement, Slots]:
    """Place ``requests`` with baseline ``name``: the accepted ones and their slots."""
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
    return out, s.slots


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
def verify(hosts: Sequence[PlanHost], vms: Sequence[PlanVM], where: Placement,
           slots: Mapping[str, tuple[Sequence[int], Sequence[int]]] | None = None,
           ) -> dict[str, int]:
    """Overcommitted hosts, broken group rules (pairs of members), NUMA and GPU violations
    (overcommitted cells or devices, pinned or GPU VMs without valid ``slots``)."""
    by_name = {h.name: h for h in hosts}
    rack = {h.name: h.rack or h.name for h in hosts}
    used: Counter[str] = Counter()
    mem: Counter[str] = Counter()
    groups: dict[str, list[tuple[str, PlanVM]]] = defaultdict(list)
    placed = [(vm, by_name[where[vm.name]]) for vm in vms if vm.name in where]
    for vm, h in placed:
        used[h.name] += _milli(vm.vcpus)
        mem[h.name] += vm.memory_mib
        if vm.group:
            groups[vm.group].append((h.name, vm))
    over = sum(1 for h in hosts if used[h.name] > _milli(h.vcpus) or mem[h.name] > h.memory_mib)
    bad = sum(_pair_violations(members, rack) for members in groups.values())
    numa, gpu = _cell_violations(placed, slots or {})
    return {"overcommitted_hosts": over, "rule_violations": bad, "numa_violations": numa,
            "gpu_violations": gpu}


def _distinct(picked: Sequence[int], count: int, limit: int) -> bool:
    return len(picked) == count == len(set(picked)) and all(0 <= k < limit for k in picked)


def _cell_violations(placed: list[tuple[PlanVM, PlanHost]],
                     slots: Mapping[str, tuple[Sequence[int], Sequence[int]]]) -> tuple[int, int]:
    """NUMA and GPU violations: loads summed per cell and per device, from scratch."""
    load: Counter[tuple[str, str, int]] = Counter()  # (host, cpu|mem|gpu, index)
    numa_bad = gpu_bad = 0
    for vm, h in placed:
        cells, devices = slots.get(vm.name, ((), ()))
        if vm.numa and h.numa_cells and not _distinct(cells, vm.numa, len(h.numa_cells)):
            numa_bad += 1
        elif vm.numa and h.numa_cells:
            n = len(cells)
            for k, c, m in zip(cells, _split(_milli(vm.vcpus), n), _split(vm.memory_mib, n),
                               strict=True):
                load[(h.name, "cpu", k)] += c
                load[(h.name, "mem", k)] += m
        count, each = _device_need(vm)
        gpu_bad += bool(vm.gpus) and not _distinct(devices, count, h.gpus)
        for d in devices if vm.gpus and _distinct(devices, count, h.gpus) else ():
            load[(h.name, "gpu", d)] += each
    cap = {(h.name, what, k): _milli(c.vcpus) if what == "cpu" else c.memory_mib
           for _, h in placed for k, c in enumerate(h.numa_cells) for what in ("cpu", "mem")}
    for key, used in load.items():
        over = used > (WHOLE if key[1] == "gpu" else cap[key])
        numa_bad += over and key[1] != "gpu"
        gpu_bad += over and key[1] == "gpu"
    return numa_bad, gpu_bad


def _pair_violations(members: list[tuple[str, PlanVM]], rack: dict[str, str]) -> int:
    bad = 0
    for k, (h1, a) in enumerate(members):
        for h2, b in members[k + 1:]:
            same_host, same_rack = h1 == h2, rack[h1] == rack[h2]
            bad += {"affinity": not same_host, "anti-affinity": same_host,
                    "rack-affinity": not same_rack, "rack-anti-affinity": same_rack,
                    "fault-domain": same_rack and a.domain != b.domain}.get(a.rule, False)
    return bad
