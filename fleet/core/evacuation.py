"""Evacuation planning: move every VM off one or more hosts, planned together.

The VMs of the source hosts are lifted and packed onto the other hosts as one
multi-dimensional packing problem: largest first (by dominant share of vCPU or memory),
VMs of a host-affinity group as one gang, every filter respected. The first strategy is
the engine's own filter-and-weigh (fast, indexed); when it leaves a VM behind the planner
also tries first-fit decreasing, best-fit decreasing and dot-product decreasing on the same
input and keeps the plan that places most, so it never does worse than any of them.

The moves are then ordered longest first (by memory, a proxy for migration time) and cut
into waves that respect the per-source and per-destination concurrency caps. A VM that
fits nowhere is reported with the reasons each filter gave, never dropped; it stays on its
source, and the others are packed again around it so that the plan, even incomplete,
breaks no group rule (a moved member never lands in a rack or host that conflicts with a
member left behind).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from fleet.core.errors import InvalidInput
from fleet.core.filters import Query, passes
from fleet.core.fleetstate import Demand, FleetState, demand_of
from fleet.core.placement import NO_SCORE, pinned, plus, query, roomy, select, why_nowhere
from fleet.core.planmodel import PlanVM, Rule

ENGINE, FFD, BEST_FIT, DOT_PRODUCT = "engine", "first-fit-decreasing", "best-fit", "dot-product"
STRATEGIES: tuple[str, ...] = (ENGINE, FFD, BEST_FIT, DOT_PRODUCT)


@dataclass(frozen=True)
class PlannedMove:
    """One VM to migrate, in ``wave`` (moves of a wave may run at the same time)."""

    vm: str
    source: str
    destination: str
    wave: int
    vcpus: float
    memory_mib: int

    def to_dict(self) -> dict[str, object]:
        return {"vm": self.vm, "source": self.source, "destination": self.destination,
                "wave": self.wave, "vcpus": self.vcpus, "memory_mib": self.memory_mib}


@dataclass(frozen=True)
class Unplaced:
    """A VM no host can take, and why."""

    vm: str
    source: str
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"vm": self.vm, "source": self.source, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class EvacuationPlan:
    """Ordered moves (by wave) and the VMs left behind with reasons."""

    sources: tuple[str, ...]
    strategy: str
    moves: tuple[PlannedMove, ...]
    unplaced: tuple[Unplaced, ...]

    @property
    def complete(self) -> bool:
        return not self.unplaced

    @property
    def waves(self) -> int:
        return 1 + max((m.wave for m in self.moves), default=-1)

    def to_dict(self) -> dict[str, object]:
        return {"sources": list(self.sources), "strategy": self.strategy,
                "complete": self.complete, "waves": self.waves,
                "moves": [m.to_dict() for m in self.moves],
                "unplaced": [u.to_dict() for u in self.unplaced]}


# ------------------------------------------------------------------ selection rules
Selector = Callable[[FleetState, Query], "int | None"]


def _candidates(st: FleetState, q: Query) -> Iterable[int]:
    hosts = pinned(st, q)
    return roomy(st, q) if hosts is None else hosts


def _first_fit(st: FleetState, q: Query) -> int | None:
    return next((i for i in _candidates(st, q) if passes(st, i, q)), None)


def _keyed(st: FleetState, q: Query, key: Callable[[int], float]) -> int | None:
    best, best_i = NO_SCORE, None
    for i in _candidates(st, q):
        if passes(st, i, q):
            k = key(i)
            if k > best:
                best, best_i = k, i
    return best_i


def _best_fit(st: FleetState, q: Query) -> int | None:
    """Least normalised capacity left after placement (sum over vCPU and memory)."""
    d = q.demand

    def left(i: int) -> float:
        return -((st.free_cpu[i] - d.cpu) / max(1, st.cap_cpu[i])
                 + (st.free_mem[i] - d.mem) / max(1, st.cap_mem[i]))
    return _keyed(st, q, left)


def _dot_product(st: FleetState, q: Query) -> int | None:
    """Largest dot product of demand and free capacity, both normalised by the host's."""
    d = q.demand

    def dot(i: int) -> float:
        cc, cm = max(1, st.cap_cpu[i]), max(1, st.cap_mem[i])
        return d.cpu * st.free_cpu[i] / (cc * cc) + d.mem * st.free_mem[i] / (cm * cm)
    return _keyed(st, q, dot)


SELECTORS: dict[str, Selector] = {ENGINE: select, FFD: _first_fit, BEST_FIT: _best_fit,
                                  DOT_PRODUCT: _dot_product}


# ------------------------------------------------------------------ packing
def _units(st: FleetState, vms: Sequence[PlanVM]) -> list[list[PlanVM]]:
    """VMs grouped into what moves together (host-affinity gangs), largest first."""
    gangs: dict[str, list[PlanVM]] = {}
    units: list[list[PlanVM]] = []
    for vm in vms:
        if vm.rule == Rule.AFFINITY.value:
            if vm.group not in gangs:
                gangs[vm.group] = []
                units.append(gangs[vm.group])
            gangs[vm.group].append(vm)
        else:
            units.append([vm])

    def size(unit: list[PlanVM]) -> tuple[float, str]:
        d = _total(unit)
        return -max(d.cpu / st.scale_cpu, d.mem / st.scale_mem), unit[0].name
    return sorted(units, key=size)


def _total(unit: Sequence[PlanVM]) -> Demand:
    if len(unit) == 1:
        return demand_of(unit[0])
    total = Demand(0, 0)
    for vm in unit:
        total = plus(total, demand_of(vm))
    return total


def _lands(st: FleetState, vm: PlanVM, dest: int | None, gang: bool) -> bool:
    """Whether ``vm`` goes to ``dest``: the filters passed for a gang's first member, so
    each other member is checked against the NUMA cells and devices left."""
    if dest is None:
        return False
    return not gang or ((not vm.numa or st.numa_fits(dest, demand_of(vm)))
                        and (not vm.gpus or st.gpu_fits(dest, vm.gpu_milli, vm.gpu_milli)))


@dataclass
class _Attempt:
    strategy: str
    placed: list[tuple[PlanVM, int, int]]  # vm, source index, destination index
    failed: list[tuple[PlanVM, int, tuple[str, ...]]]


def _pack(st: FleetState, units: list[list[PlanVM]], origin: dict[str, int],
          strategy: str, exclude: Iterable[str], explain: bool) -> _Attempt:
    pick = SELECTORS[strategy]
    attempt = _Attempt(strategy, [], [])
    for unit in units:
        q = query(st, unit[0], exclude, _total(unit))
        dest = pick(st, q)
        for vm in unit:
            if _lands(st, vm, dest, len(unit) > 1):
                assert dest is not None
                st.add(vm, dest)
                attempt.placed.append((vm, origin[vm.name], dest))
            else:
                why = why_nowhere(st, q) if explain else ()
                attempt.failed.append((vm, origin[vm.name], why))
    return attempt


def _attempt(st: FleetState, sources: list[int], strategy: str,
             exclude: Iterable[str], explain: bool = False) -> _Attempt:
    """Pack with ``strategy``; VMs that fit nowhere stay on their source and the rest is
    packed again around them, until the plan is consistent with what stays."""
    stay: dict[str, tuple[PlanVM, int, tuple[str, ...]]] = {}
    while True:
        attempt = _pass(st, sources, strategy, exclude, explain, stay)
        if not attempt.failed:
            attempt.failed = sorted(stay.values(), key=lambda f: f[0].name)
            return attempt
        for vm, i, why in attempt.failed:
            stay[vm.name] = (vm, i, why)


def _pass(st: FleetState, sources: list[int], strategy: str, exclude: Iterable[str],
          explain: bool, stay: dict[str, tuple[PlanVM, int, tuple[str, ...]]]) -> _Attempt:
    with st.trial():
        origin: dict[str, int] = {}
        lifted: list[PlanVM] = []
        for i in sources:
            st.set_receiving(i, False)
            for vm in st.vms_on(i):
                if vm.name not in stay:
                    st.remove(vm.name)
                    origin[vm.name] = i
                    lifted.append(vm)
        return _pack(st, _units(st, lifted), origin, strategy, exclude, explain)


# ------------------------------------------------------------------ waves
def waves(moves: Sequence[tuple[PlanVM, str, str]], max_per_source: int,
          max_per_destination: int) -> list[PlannedMove]:
    """Moves ordered longest (most memory) first, each in the earliest wave with room."""
    if max_per_source < 1 or max_per_destination < 1:
        raise InvalidInput("concurrency caps must be at least 1")
    load: list[tuple[Counter[str], Counter[str]]] = []
    out: list[PlannedMove] = []
    for vm, src, dst in sorted(moves, key=lambda m: (-m[0].memory_mib, m[0].name)):
        w = 0
        while w < len(load) and (load[w][0][src] >= max_per_source
                                 or load[w][1][dst] >= max_per_destination):
            w += 1
        if w == len(load):
            load.append((Counter(), Counter()))
        load[w][0][src] += 1
        load[w][1][dst] += 1
        out.append(PlannedMove(vm.name, src, dst, w, vm.vcpus, vm.memory_mib))
    return sorted(out, key=lambda m: (m.wave, -m.memory_mib, m.vm))


def plan_evacuation(st: FleetState, sources: Sequence[str], *, exclude: Iterable[str] = (),
                    max_per_source: int = 2, max_per_destination: int = 1,
                    strategies: Sequence[str] = STRATEGIES,
                    explain: bool = True) -> EvacuationPlan:
    """Plan moving every VM off ``sources``; ``st`` is unchanged afterwards.

    Strategies are tried in order until one places every VM; the plan that places most
    wins (earlier strategies win ties). With ``explain`` each VM left behind carries the
    reasons every filter gave (O(hosts) per such VM).
    """
    unknown = [s for s in sources if s not in st.index]
    if unknown:
        raise InvalidInput(f"unknown host {unknown[0]!r}")
    bad = [s for s in strategies if s not in SELECTORS]
    if bad or not strategies:
        raise InvalidInput(f"unknown strategy {bad[0] if bad else '(none)'!r}")
    idx = [st.index[s] for s in dict.fromkeys(sources)]
    exclude = list(exclude)
    best: _Attempt | None = None
    for strategy in strategies:
        got = _attempt(st, idx, strategy, exclude)
        if best is None or len(got.placed) > len(best.placed):
            best = got
        if not best.failed:
            break
    assert best is not None
    if best.failed and explain:
        best = _attempt(st, idx, best.strategy, exclude, explain=True)
    name = st.hosts.__getitem__
    moves = waves([(vm, name(s).name, name(d).name) for vm, s, d in best.placed],
                  max_per_source, max_per_destination)
    unplaced = tuple(Unplaced(vm.name, name(s).name, why) for vm, s, why in best.failed)
    return EvacuationPlan(tuple(st.hosts[i].name for i in idx), best.strategy,
                          tuple(moves), unplaced)
