"""The NUMA cells and devices part of the planning state (``FleetState`` inherits it).

Per host with cells: free vCPU (milli) and memory (MiB) per cell, after allocation ratios
and an even share of the reserved memory; per host with devices: free milli per device.
For each VM pinned to cells or holding devices, the ``Slot`` it took (``slot_of``), so
lifting it gives back exactly that. The choices themselves are ``fleet.core.slots``.
"""

from __future__ import annotations

from typing import NamedTuple

from fleet.core.planmodel import PlacementConfig, PlanHost, PlanVM, milli
from fleet.core.slots import (
    EMPTY,
    WHOLE,
    Slot,
    cells_fit,
    choose_cells,
    choose_devices,
    devices_fit,
    parts,
    per_device,
    whole,
)


class Demand(NamedTuple):
    """Resources in engine units: milli-vCPU, MiB, GiB, milli-devices; cells pinned to."""

    cpu: int
    mem: int
    disk: int = 0
    gpu: int = 0
    numa: int = 0


def demand_of(vm: PlanVM) -> Demand:
    return Demand(vm.cpu_milli, vm.memory_mib, vm.disk_gib, vm.gpu_milli, vm.numa)


class CellState:
    """Free cells and devices per host, and the slot of each VM that holds some."""

    config: PlacementConfig
    hosts: list[PlanHost]

    def _init_cells(self) -> None:
        c = self.config
        self.cell_cap_cpu: list[list[int]] = []
        self.cell_cap_mem: list[list[int]] = []
        for h in self.hosts:
            reserved = parts(c.reserved_host_memory_mib, len(h.numa_cells) or 1)
            self.cell_cap_cpu.append([int(milli(x.vcpus) * c.cpu_allocation_ratio)
                                      for x in h.numa_cells])
            self.cell_cap_mem.append([int(x.memory_mib * c.ram_allocation_ratio) - r
                                      for x, r in zip(h.numa_cells, reserved, strict=False)])
        self.cell_cpu = [list(x) for x in self.cell_cap_cpu]
        self.cell_mem = [list(x) for x in self.cell_cap_mem]
        self.gpu_free = [[WHOLE] * h.gpus for h in self.hosts]
        self.slot_of: dict[str, Slot] = {}
        self._claim_slots: dict[tuple[int, Demand], list[Slot]] = {}

    def _choose(self, i: int, d: Demand, given: Slot = EMPTY) -> Slot:
        """The cells and devices ``d`` takes on host ``i`` (``given`` when it is valid)."""
        cells: tuple[int, ...] = ()
        devices: tuple[int, ...] = ()
        if d.numa and self.cell_cpu[i]:
            cpu, mem = self.cell_cpu[i], self.cell_mem[i]
            cells = (given.cells if _valid(given.cells, len(cpu), d.numa) else choose_cells(
                cpu, mem, (self.cell_cap_cpu[i], self.cell_cap_mem[i]), d.cpu, d.mem, d.numa))
        if d.gpu and self.gpu_free[i]:
            free = self.gpu_free[i]
            devices = (given.devices if _valid(given.devices, len(free), max(1, whole(d.gpu)))
                       else choose_devices(free, d.gpu))
        return Slot(cells, devices)

    def _apply(self, i: int, d: Demand, slot: Slot, sign: int) -> None:
        if slot.cells:
            cpu, mem, n = self.cell_cpu[i], self.cell_mem[i], len(slot.cells)
            for k, c, m in zip(slot.cells, parts(d.cpu, n), parts(d.mem, n), strict=True):
                cpu[k] -= sign * c
                mem[k] -= sign * m
        free, each = self.gpu_free[i], per_device(d.gpu)
        for k in slot.devices:
            free[k] -= sign * each

    def _slot(self, name: str, i: int, d: Demand, given: Slot = EMPTY) -> Slot:
        """Choose the slot of VM ``name`` on host ``i`` and remember it (not taken yet)."""
        slot = self._choose(i, d, given)
        if slot == EMPTY:
            return EMPTY
        self.slot_of[name] = slot
        return slot

    def numa_fits(self, i: int, d: Demand) -> bool:
        """Whether host ``i``'s cells can take ``d`` (one VM's) as pinned to ``d.numa``
        cells (True: no cells known)."""
        cpu = self.cell_cpu[i]
        if not cpu:
            return True
        if d.numa == 1:  # the common case, inline
            mem, c, m = self.cell_mem[i], d.cpu, d.mem
            for k in range(len(cpu)):  # noqa: SIM110 (hot path: a loop beats any())
                if cpu[k] >= c and mem[k] >= m:
                    return True
            return False
        return cells_fit(cpu, self.cell_mem[i], d.cpu, d.mem, d.numa)

    def gpu_fits(self, i: int, own: int, total: int) -> bool:
        """Whether host ``i``'s devices serve ``own`` milli-devices (and ``total`` for a
        gang of several VMs, counted as a sum)."""
        free = self.gpu_free[i]
        return devices_fit(free, own) and (total <= own or sum(free) >= total)


def _valid(picked: tuple[int, ...], n: int, want: int) -> bool:
    """A recorded pinning is used when it names ``want`` distinct indexes below ``n``."""
    return (len(picked) == min(want, n) and len(set(picked)) == len(picked)
            and all(0 <= k < n for k in picked))
