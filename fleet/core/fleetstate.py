"""The placement engine's view of a fleet: free capacity, group membership and indexes.

``FleetState`` is built once per planning run (O(hosts + VMs)) and then updated
incrementally as the planner places or lifts VMs. It keeps:

- per-host capacity (physical x allocation ratio, minus reserved memory) and free
  vectors in integer units (milli-vCPU, MiB, GiB), counting in-flight claims;
- per NUMA cell free vCPU and memory (hosts that list cells) and per device free share
  (hosts with GPUs), and for each VM pinned or holding devices the ``Slot`` it took
  (``fleet.core.slots``), so lifting it gives back exactly that; in-flight claims of
  pinned or device-holding VMs take slots too (released last-taken first);
- group membership per host and per rack, for the group rules;
- a grid of buckets over (device level, NUMA level, free vCPU share, free memory share)
  of the hosts that can receive, each bucket sorted by the VM-independent weigher score
  (the linear weighers and ``gpu``), so a query can skip whole buckets that cannot fit
  the VM or cannot beat the best host found so far (the levels, ``fleet.core.slots``,
  keep hosts whose GPUs are taken, or whose NUMA cells are too full, out of a GPU or
  pinned request's way; a fleet without devices or cells has one level of each);
- a journal, so ``trial()`` can undo a what-if (an evacuation plan, an N+1 check).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace

from fleet.core.cellstate import CellState, Demand, demand_of
from fleet.core.errors import InvalidInput
from fleet.core.models import HostState
from fleet.core.planmodel import PlacementConfig, PlanHost, PlanVM, Rule, milli
from fleet.core.slots import (
    EMPTY,
    WHOLE,
    Slot,
    level,
    level_may_fit,
    numa_level,
    numa_levels,
    numa_min_level,
)
from fleet.core.weighers import (
    Weights,
    balance,
    edge_bound,
    linear_score,
    parse_weights,
    share,
)

__all__ = ["GRID", "UNTRACKED", "Demand", "FleetState", "demand_of"]

GRID = 16
UNTRACKED = 1 << 62


class FleetState(CellState):
    """Mutable planning state; see the module docstring."""

    def __init__(self, hosts: Sequence[PlanHost], config: PlacementConfig | None = None,
                 vms: Iterable[PlanVM] = (), claims: Mapping[str, Demand] | None = None):
        self.config = config or PlacementConfig()
        self.weights: Weights = parse_weights(self.config.weights)
        self.hosts = list(hosts)
        self.index: dict[str, int] = {}
        for i, h in enumerate(self.hosts):
            if h.name in self.index:
                raise InvalidInput(f"host {h.name!r} appears twice")
            self.index[h.name] = i
        self._init_capacity()
        self._init_cells()
        self._init_racks()
        self.placed: dict[str, tuple[PlanVM, int]] = {}
        self.group_hosts: dict[str, Counter[int]] = {}
        self.group_racks: dict[str, Counter[int]] = {}
        self.fault_domains: dict[tuple[str, int], Counter[str]] = {}
        self._journal: list[tuple[str, object, int]] = []
        self._depth = 0
        self._load(vms)
        for name, d in (claims or {}).items():
            self.claim(name, d, +1)
        self._init_buckets()

    # ----------------------------------------------------------------- construction
    def _init_capacity(self) -> None:
        c = self.config
        self.cap_cpu = [int(milli(h.vcpus) * c.cpu_allocation_ratio) for h in self.hosts]
        self.cap_mem = [int(h.memory_mib * c.ram_allocation_ratio) - c.reserved_host_memory_mib
                        for h in self.hosts]
        self.cap_disk = [UNTRACKED if h.disk_gib is None
                         else int(h.disk_gib * c.disk_allocation_ratio) for h in self.hosts]
        self.free_cpu = list(self.cap_cpu)
        self.free_mem = list(self.cap_mem)
        self.free_disk = list(self.cap_disk)
        self.receiving = [h.state == HostState.ACTIVE.value for h in self.hosts]
        self.bucket_of = [-1] * len(self.hosts)
        self.host_vms: list[dict[str, None]] = [{} for _ in self.hosts]
        self.scale_cpu = max([1, *self.cap_cpu])
        self.scale_mem = max([1, *self.cap_mem])
        self.scale_disk = max([1, *(d for d in self.cap_disk if d != UNTRACKED)])

    def _load(self, vms: Iterable[PlanVM]) -> None:
        """Bulk ``add`` before the index exists (one tight loop: this is most of a build)."""
        placed, host_vms, index = self.placed, self.host_vms, self.index
        free_cpu, free_mem, free_disk, cap_disk = (self.free_cpu, self.free_mem,
                                                   self.free_disk, self.cap_disk)
        for vm in vms:
            i = index.get(vm.host)
            if i is None:
                continue
            if vm.name in placed:
                raise InvalidInput(f"VM {vm.name!r} appears twice")
            placed[vm.name] = (vm, i)
            host_vms[i][vm.name] = None
            free_cpu[i] -= round(vm.vcpus * 1000)
            free_mem[i] -= vm.memory_mib
            if cap_disk[i] != UNTRACKED:
                free_disk[i] -= vm.disk_gib
            if vm.numa or vm.gpus:
                d = demand_of(vm)
                self._apply(i, d, self._slot(vm.name, i, d, Slot(vm.cells, vm.devices)), +1)
            if vm.group:
                self._member(vm, i, +1)

    def _init_racks(self) -> None:
        rack_ids: dict[str, int] = {}
        self.rack_of: list[int] = []
        for h in self.hosts:
            key = h.rack or f"\0{h.name}"
            self.rack_of.append(rack_ids.setdefault(key, len(rack_ids)))
        self.rack_names = [k if not k.startswith("\0") else k[1:] for k in rack_ids]
        self.rack_hosts: list[list[int]] = [[] for _ in rack_ids]
        for i, r in enumerate(self.rack_of):
            self.rack_hosts[r].append(i)

    def _init_buckets(self) -> None:
        w, n = self.weights, GRID
        self.levels = 1 + max((level([WHOLE] * h.gpus) for h in self.hosts), default=0)
        self.nlevels = numa_levels([c for cells in self.cell_cap_cpu for c in cells])
        self.dyn = w.dynamic_max
        self.gpu_weight = w.gpu if self.levels > 1 else 0.0  # the gpu weigher, indexed
        self.bound = [0.0] * (n * n)
        for c in range(n * n):
            bx, by = divmod(c, n)
            self.bound[c] = (edge_bound(w.cpu, bx / n, (bx + 1) / n)
                             + edge_bound(w.ram, by / n, (by + 1) / n)
                             + max(w.disk, 0.0) + max(self.gpu_weight, 0.0) + self.dyn)
        self.order = sorted(range(n * n), key=lambda c: (-self.bound[c], c))
        self.cell_x = [c // n for c in range(n * n)]
        self.cell_y = [c % n for c in range(n * n)]
        self.filled = [0] * (self.levels * n * n)  # hosts per device level and grid cell
        self.filled_any = [0] * (n * n)  # hosts per grid cell
        planes = self.levels * self.nlevels
        self.buckets: list[list[tuple[float, int]]] = [[] for _ in range(planes * n * n)]
        self.score = [0.0] * len(self.hosts)
        for i in range(len(self.hosts)):
            if self.receiving[i]:
                self._index(i)

    # ----------------------------------------------------------------- index
    def shares(self, i: int) -> tuple[float, float, float]:
        """Free vCPU, memory and disk of host ``i`` as shares of the fleet's largest."""
        disk = 1.0 if self.cap_disk[i] == UNTRACKED else share(self.free_disk[i],
                                                                 self.scale_disk)
        return (share(self.free_cpu[i], self.scale_cpu),
                share(self.free_mem[i], self.scale_mem), disk)

    def _bucket(self, i: int) -> int:
        n = GRID
        bx = min(n - 1, max(0, self.free_cpu[i] * n // self.scale_cpu))
        by = min(n - 1, max(0, self.free_mem[i] * n // self.scale_mem))
        lv = level(self.gpu_free[i]) if self.levels > 1 else 0
        if self.nlevels > 1:
            lv = lv * self.nlevels + numa_level(self.cell_cpu[i], self.nlevels)
        return (lv * n + bx) * n + by

    def _index(self, i: int) -> None:
        s = linear_score(self.weights, *self.shares(i))
        free = self.gpu_free[i]
        if self.gpu_weight and free:
            gpu = sum(f for f in free if f > 0) / (WHOLE * len(free))
            s += self.gpu_weight * balance(share(self.free_cpu[i], self.cap_cpu[i]), gpu)
        b = self._bucket(i)
        self.score[i], self.bucket_of[i] = s, b
        bisect.insort(self.buckets[b], (-s, i))
        self.filled[self._tier_cell(b)] += 1
        self.filled_any[b % (GRID * GRID)] += 1

    def _tier_cell(self, b: int) -> int:
        """Bucket ``b``'s index in ``filled``: its device level and grid cell."""
        plane, c = divmod(b, GRID * GRID)
        return plane // self.nlevels * GRID * GRID + c

    def _unindex(self, i: int) -> None:
        b = self.bucket_of[i]
        if b < 0:
            return
        items = self.buckets[b]
        del items[bisect.bisect_left(items, (-self.score[i], i))]
        self.filled[self._tier_cell(b)] -= 1
        self.filled_any[b % (GRID * GRID)] -= 1
        self.bucket_of[i] = -1

    def cell_floor(self, d: Demand) -> tuple[int, int]:
        """The lowest grid column and row (free vCPU, free memory) whose hosts may have
        room for ``d``: hosts in a lower one all have less free vCPU or memory."""
        n = GRID
        return (min(n - 1, d.cpu * n // self.scale_cpu),
                min(n - 1, d.mem * n // self.scale_mem))

    def tiers(self, gpu: int, part: int) -> list[tuple[int, list[int]]]:
        """Where to look for a VM of ``gpu`` milli-devices and ``part`` milli-vCPU per NUMA
        cell (one VM's), in order: (first index in ``filled``, or -1 for ``filled_any``;
        the first buckets of the planes whose hosts may hold it). A VM without devices
        looks at one device level at a time, lowest first; a VM with devices at every
        level that may serve it at once."""
        cells, nl = GRID * GRID, self.nlevels
        low = numa_min_level(part, nl)
        levels = [g for g in range(self.levels) if level_may_fit(g, gpu)]
        if gpu:
            return [(-1, [(g * nl + k) * cells for g in levels for k in range(low, nl)])]
        return [(g * cells, [(g * nl + k) * cells for k in range(low, nl)]) for g in levels]

    # ----------------------------------------------------------------- mutation
    def _take(self, i: int, d: Demand, sign: int, slot: Slot = EMPTY) -> None:
        """Take (+1) or give back (-1) ``d`` on host ``i``, and on the cells and devices
        of ``slot``."""
        indexed = self.bucket_of[i] >= 0
        if indexed:
            self._unindex(i)
        self.free_cpu[i] -= sign * d.cpu
        self.free_mem[i] -= sign * d.mem
        if self.cap_disk[i] != UNTRACKED:
            self.free_disk[i] -= sign * d.disk
        if slot is not EMPTY:
            self._apply(i, d, slot, sign)
        if indexed:
            self._index(i)

    def add(self, vm: PlanVM, i: int, slot: Slot = EMPTY) -> None:
        """Record ``vm`` as running (or planned) on host ``i``, in ``slot`` if given (else
        the engine picks its cells and devices)."""
        if vm.name in self.placed:
            raise InvalidInput(f"VM {vm.name!r} appears twice")
        self.placed[vm.name] = (vm, i)
        self.host_vms[i][vm.name] = None
        d = demand_of(vm)
        self._take(i, d, +1, self._slot(vm.name, i, d, slot) if d.numa or d.gpu else EMPTY)
        if vm.group:
            self._member(vm, i, +1)
        if self._depth:
            self._journal.append(("add", vm.name, i))

    def remove(self, name: str) -> tuple[PlanVM, int]:
        """Lift VM ``name`` off its host; returns it and the host index it was on."""
        vm, i = self.placed.pop(name)
        del self.host_vms[i][name]
        slot = self.slot_of.pop(name, EMPTY)
        self._take(i, demand_of(vm), -1, slot)
        if vm.group:
            self._member(vm, i, -1)
        if self._depth:
            self._journal.append(("remove", (vm, slot), i))
        return vm, i

    def set_receiving(self, i: int, receiving: bool) -> None:
        """Open or close host ``i`` to new VMs (a host being evacuated receives nothing)."""
        was = self.receiving[i]
        if was == receiving:
            return
        self.receiving[i] = receiving
        if receiving:
            self._index(i)
        else:
            self._unindex(i)
        if self._depth:
            self._journal.append(("recv", was, i))

    def claim(self, host: str, d: Demand, sign: int) -> None:
        """Reserve (+1) or release (-1) capacity on ``host`` for an in-flight move.

        A claim of a pinned or device-holding VM also takes cells and devices; a release
        gives back those of the last claim of the same demand on that host.
        """
        i = self.index.get(host)
        if i is None:
            return
        slot = EMPTY
        if d.numa or d.gpu:
            stack = self._claim_slots.setdefault((i, d), [])
            if sign > 0:
                slot = self._choose(i, d)
                stack.append(slot)
            elif stack:
                slot = stack.pop()
        self._take(i, d, sign, slot)

    def set_host_state(self, host: str, state: str) -> None:
        """A host changed state: only active hosts receive."""
        i = self.index.get(host)
        if i is None:
            return
        self.hosts[i] = replace(self.hosts[i], state=state)
        self.set_receiving(i, state == HostState.ACTIVE.value)

    def _member(self, vm: PlanVM, i: int, sign: int) -> None:
        rack = self.rack_of[i]
        _bump(self.group_hosts.setdefault(vm.group, Counter()), i, sign)
        _bump(self.group_racks.setdefault(vm.group, Counter()), rack, sign)
        if vm.rule == Rule.FAULT_DOMAIN.value:
            key = (vm.group, rack)
            _bump(self.fault_domains.setdefault(key, Counter()), vm.domain, sign)

    @contextmanager
    def trial(self) -> Iterator[None]:
        """Everything changed inside the block is undone when it ends."""
        mark = len(self._journal)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            self._rollback(mark)

    def _rollback(self, mark: int) -> None:
        depth, self._depth = self._depth, 0
        while len(self._journal) > mark:
            op, obj, i = self._journal.pop()
            if op == "add":
                self.remove(str(obj))
            elif op == "remove":
                assert isinstance(obj, tuple)
                self.add(obj[0], i, obj[1])
            else:
                self.set_receiving(i, bool(obj))
        self._depth = depth

    # ----------------------------------------------------------------- queries
    def vms_on(self, i: int) -> list[PlanVM]:
        """VMs on host ``i``, in the order they were added."""
        return [self.placed[n][0] for n in self.host_vms[i]]

    def rack_free(self, r: int) -> tuple[int, int]:
        """Free vCPU (milli) and MiB summed over the receiving hosts of rack ``r``."""
        hosts = [i for i in self.rack_hosts[r] if self.receiving[i]]
        return (sum(max(0, self.free_cpu[i]) for i in hosts),
                sum(max(0, self.free_mem[i]) for i in hosts))


def _bump(counter: Counter[int] | Counter[str], key: object, sign: int) -> None:
    c: Counter[object] = counter  # type: ignore[assignment]
    c[key] += sign
    if c[key] <= 0:
        del c[key]
