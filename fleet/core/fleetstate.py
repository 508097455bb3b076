"""The placement engine's view of a fleet: free capacity, group membership and indexes.

``FleetState`` is built once per planning run (O(hosts + VMs)) and then updated
incrementally as the planner places or lifts VMs. It keeps:

- per-host capacity (physical x allocation ratio, minus reserved memory) and free
  vectors in integer units (milli-vCPU, MiB, GiB), counting in-flight claims;
- group membership per host and per rack, for the group rules;
- a 2-D grid of buckets over (free vCPU share, free memory share) of the hosts that can
  receive, each bucket sorted by the linear weigher score, so a query can skip whole
  buckets that cannot fit the VM or cannot beat the best host found so far;
- a journal, so ``trial()`` can undo a what-if (an evacuation plan, an N+1 check).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import NamedTuple

from fleet.core.errors import InvalidInput
from fleet.core.models import HostState
from fleet.core.planmodel import PlacementConfig, PlanHost, PlanVM, Rule, milli
from fleet.core.weighers import Weights, edge_bound, linear_score, parse_weights, share

GRID = 16
UNTRACKED = 1 << 62


class Demand(NamedTuple):
    """Resources in engine units: milli-vCPU, MiB, GiB."""

    cpu: int
    mem: int
    disk: int = 0


def demand_of(vm: PlanVM) -> Demand:
    return Demand(vm.cpu_milli, vm.memory_mib, vm.disk_gib)


class FleetState:
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
        self._init_racks()
        self.placed: dict[str, tuple[PlanVM, int]] = {}
        self.group_hosts: dict[str, Counter[int]] = {}
        self.group_racks: dict[str, Counter[int]] = {}
        self.fault_domains: dict[tuple[str, int], Counter[str]] = {}
        self._journal: list[tuple[str, object, int]] = []
        self._depth = 0
        for name, d in (claims or {}).items():
            if name in self.index:
                self._take(self.index[name], d, +1)
        self._load(vms)
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
        self.bound = [0.0] * (n * n)
        for b in range(n * n):
            bx, by = divmod(b, n)
            self.bound[b] = (edge_bound(w.cpu, bx / n, (bx + 1) / n)
                             + edge_bound(w.ram, by / n, (by + 1) / n)
                             + max(w.disk, 0.0) + w.dynamic_max)
        self.order = sorted(range(n * n), key=lambda b: (-self.bound[b], b))
        self.buckets: list[list[tuple[float, int]]] = [[] for _ in range(n * n)]
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
        return bx * n + by

    def _index(self, i: int) -> None:
        s = linear_score(self.weights, *self.shares(i))
        b = self._bucket(i)
        self.score[i], self.bucket_of[i] = s, b
        bisect.insort(self.buckets[b], (-s, i))

    def _unindex(self, i: int) -> None:
        b = self.bucket_of[i]
        if b < 0:
            return
        items = self.buckets[b]
        del items[bisect.bisect_left(items, (-self.score[i], i))]
        self.bucket_of[i] = -1

    def bucket_may_fit(self, b: int, d: Demand) -> bool:
        """False when every host in bucket ``b`` has less free vCPU or memory than ``d``."""
        n = GRID
        bx, by = divmod(b, n)
        if bx < n - 1 and (bx + 1) * self.scale_cpu <= d.cpu * n:
            return False
        return not (by < n - 1 and (by + 1) * self.scale_mem <= d.mem * n)

    # ----------------------------------------------------------------- mutation
    def _take(self, i: int, d: Demand, sign: int) -> None:
        indexed = self.bucket_of[i] >= 0
        if indexed:
            self._unindex(i)
        self.free_cpu[i] -= sign * d.cpu
        self.free_mem[i] -= sign * d.mem
        if self.cap_disk[i] != UNTRACKED:
            self.free_disk[i] -= sign * d.disk
        if indexed:
            self._index(i)

    def add(self, vm: PlanVM, i: int) -> None:
        """Record ``vm`` as running (or planned) on host ``i``."""
        if vm.name in self.placed:
            raise InvalidInput(f"VM {vm.name!r} appears twice")
        self.placed[vm.name] = (vm, i)
        self.host_vms[i][vm.name] = None
        self._take(i, demand_of(vm), +1)
        if vm.group:
            self._member(vm, i, +1)
        if self._depth:
            self._journal.append(("add", vm.name, i))

    def remove(self, name: str) -> tuple[PlanVM, int]:
        """Lift VM ``name`` off its host; returns it and the host index it was on."""
        vm, i = self.placed.pop(name)
        del self.host_vms[i][name]
        self._take(i, demand_of(vm), -1)
        if vm.group:
            self._member(vm, i, -1)
        if self._depth:
            self._journal.append(("remove", vm, i))
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
        """Reserve (+1) or release (-1) capacity on ``host`` for an in-flight move."""
        i = self.index.get(host)
        if i is not None:
            self._take(i, d, sign)

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
                assert isinstance(obj, PlanVM)
                self.add(obj, i)
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
