"""Placement: which host should receive a VM, and why the others may not.

The engine filters (``fleet.core.filters``) and weighs (``fleet.core.weighers``) over a
``FleetState``. It does not visit every host per VM: the state keeps receiving hosts in a
grid of buckets over free (vCPU, memory), each sorted by the linear weigher score, and
``select`` walks the buckets best-bound first, skipping buckets that cannot fit the VM and
stopping once no bucket can beat the best host found. The answer is the same host a full
filter-then-weigh pass would pick (up to ties).

``pick_host`` is the runtime's entry point (one VM, live store data); ``place_stream`` places
a sequence of requests in order (offline planning, ``fleet plan place``); ``explain`` says
why each rejected host was rejected.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from fleet.core.filters import Query, passes, reason_code, rejections
from fleet.core.fleetstate import Demand, FleetState, demand_of
from fleet.core.models import VM, Host
from fleet.core.planmodel import PlacementConfig, PlanVM, Rule, milli, plan_host, plan_vm
from fleet.core.weighers import balance, share

NO_SCORE = float("-inf")


# ------------------------------------------------------------------ single VM
def query(st: FleetState, vm: PlanVM, exclude: Iterable[str] = (),
          demand: Demand | None = None) -> Query:
    """The question "where may ``vm`` go", excluding its own host and ``exclude``."""
    banned = {st.index[n] for n in (vm.host, *exclude) if n in st.index}
    return Query(vm, demand or demand_of(vm), frozenset(banned))


def score(st: FleetState, i: int, q: Query) -> float:
    """Combined weigher score of host ``i`` for ``q`` (higher is better)."""
    s = st.score[i]
    w = st.weights.balance
    if w:
        d = q.demand
        cpu = share(st.free_cpu[i] - d.cpu, st.scale_cpu)
        mem = share(st.free_mem[i] - d.mem, st.scale_mem)
        s += w * balance(cpu, mem)
    return s


def pinned(st: FleetState, q: Query) -> list[int] | None:
    """The few hosts an affinity rule confines ``q`` to, or None when unconfined."""
    vm = q.vm
    if vm.rule == Rule.AFFINITY.value and st.group_hosts.get(vm.group):
        return sorted(st.group_hosts[vm.group])
    if vm.rule == Rule.RACK_AFFINITY.value and st.group_racks.get(vm.group):
        return sorted(i for r in st.group_racks[vm.group] for i in st.rack_hosts[r])
    return None


def best_of(st: FleetState, q: Query, hosts: Iterable[int]) -> int | None:
    """The best host of ``hosts`` that passes every filter (a plain scan)."""
    best, best_i = NO_SCORE, None
    for i in hosts:
        if passes(st, i, q):
            s = score(st, i, q)
            if s > best:
                best, best_i = s, i
    return best_i


def _scan(st: FleetState, q: Query) -> int | None:
    best, best_i = NO_SCORE, None
    dyn = st.weights.dynamic_max
    for b in st.order:
        if st.bound[b] <= best:
            break
        items = st.buckets[b]
        if not items or not st.bucket_may_fit(b, q.demand):
            continue
        for neg, i in items:
            if dyn - neg <= best:
                break
            if passes(st, i, q):
                s = score(st, i, q)
                if s > best:
                    best, best_i = s, i
                if not dyn:
                    break
    return best_i


def select(st: FleetState, q: Query) -> int | None:
    """Index of the best host for ``q``, or None when every host is filtered out."""
    hosts = pinned(st, q)
    return best_of(st, q, hosts) if hosts is not None else _scan(st, q)


@dataclass(frozen=True)
class Explanation:
    """Where a VM would go and, for every rejected host, each reason."""

    vm: str
    host: str | None
    rejected: Mapping[str, tuple[str, ...]]

    def to_dict(self) -> dict[str, object]:
        return {"vm": self.vm, "host": self.host,
                "rejected": {h: list(r) for h, r in self.rejected.items()}}


def explain(st: FleetState, vm: PlanVM, exclude: Iterable[str] = ()) -> Explanation:
    """Where ``vm`` would be placed and why each other host was rejected (O(hosts))."""
    q = query(st, vm, exclude)
    rejected = {st.hosts[i].name: tuple(r) for i in range(len(st.hosts))
                if (r := rejections(st, i, q))}
    chosen = select(st, q)
    return Explanation(vm.name, None if chosen is None else st.hosts[chosen].name, rejected)


def why_nowhere(st: FleetState, q: Query, limit: int = 5) -> tuple[str, ...]:
    """Reasons no host took ``q``: per filter, how many hosts it rejected, with an example."""
    counts: Counter[str] = Counter()
    example: dict[str, str] = {}
    for i in range(len(st.hosts)):
        for r in rejections(st, i, q):
            code = reason_code(r)
            counts[code] += 1
            example.setdefault(code, f"{st.hosts[i].name}: {r}")
    if not st.hosts:
        return ("no hosts in the fleet",)
    if not counts:
        return ("every host passes the filters one by one, but not together",)
    return tuple(f"{code} rejects {n} host{'s' if n > 1 else ''} (e.g. {example[code]})"
                 for code, n in counts.most_common(limit))


# ------------------------------------------------------------------ request streams
@dataclass(frozen=True)
class Placement:
    """One request's outcome: its host, or why it was rejected."""

    vm: str
    host: str | None
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {"vm": self.vm, "host": self.host, "reasons": list(self.reasons)}


def _group_demand(vms: Sequence[PlanVM]) -> dict[str, Demand]:
    total: dict[str, Demand] = {}
    for vm in vms:
        if vm.rule in (Rule.AFFINITY.value, Rule.RACK_AFFINITY.value):
            d, t = demand_of(vm), total.get(vm.group, Demand(0, 0, 0))
            total[vm.group] = Demand(t.cpu + d.cpu, t.mem + d.mem, t.disk + d.disk)
    return total


def _best_rack(st: FleetState, need: Demand) -> list[int] | None:
    """Hosts of the roomiest rack that holds a whole rack-affinity group, if any can.

    Racks are always chosen by room (whatever the weighers say about hosts): a rack with
    headroom keeps later members and neighbours placeable.
    """
    best, best_r = NO_SCORE, -1
    for r in range(len(st.rack_hosts)):
        cpu, mem = st.rack_free(r)
        if cpu >= need.cpu and mem >= need.mem:
            s = cpu / st.scale_cpu + mem / st.scale_mem
            if s > best:
                best, best_r = s, r
    return None if best_r < 0 else st.rack_hosts[best_r]


def _first_member(st: FleetState, q: Query, need: Demand) -> int | None:
    """Place the first member of an affinity group where the whole group will fit."""
    if q.vm.rule == Rule.AFFINITY.value:
        return select(st, Query(q.vm, need, q.exclude))
    hosts = _best_rack(st, need)
    return None if hosts is None else best_of(st, q, hosts)


def place_one(st: FleetState, vm: PlanVM, exclude: Iterable[str] = (),
              group_need: Demand | None = None) -> Placement:
    """Place ``vm`` (a request) on the best host and record it in ``st``.

    ``group_need`` is the demand of the VM's affinity group still to come; the first
    member then goes where the whole group fits, when such a place exists.
    """
    q = query(st, vm, exclude)
    chosen = None
    if group_need is not None and not st.group_hosts.get(vm.group):
        chosen = _first_member(st, q, group_need)
    if chosen is None:
        chosen = select(st, q)
    if chosen is None:
        return Placement(vm.name, None, why_nowhere(st, q))
    st.add(vm, chosen)
    return Placement(vm.name, st.hosts[chosen].name)


def place_stream(st: FleetState, vms: Sequence[PlanVM], lookahead: bool = True) -> list[Placement]:
    """Place ``vms`` in order, each on the best host left; rejected ones carry reasons.

    With ``lookahead`` the stream's later members of an affinity group are known, so the
    first member is placed where the whole group fits.
    """
    left = _group_demand(vms) if lookahead else {}
    out: list[Placement] = []
    for vm in vms:
        need = left.get(vm.group) if vm.rule in (Rule.AFFINITY.value,
                                                 Rule.RACK_AFFINITY.value) else None
        out.append(place_one(st, vm, (), need))
        if need is not None:
            d = demand_of(vm)
            left[vm.group] = Demand(need.cpu - d.cpu, need.mem - d.mem, need.disk - d.disk)
    return out


# ------------------------------------------------------------------ runtime entry point
def free_capacity(host: Host, used: tuple[int, int]) -> tuple[int, int]:
    """vCPUs and MiB still free on ``host`` given ``used`` (VMs plus claims)."""
    return host.vcpus - used[0], host.memory_mib - used[1]


RUNTIME_CONFIG = PlacementConfig(weights={"ram": 1.0})


def pick_host(
    vm: VM,
    hosts: Iterable[Host],
    used: Mapping[str, tuple[int, int]],
    exclude: Iterable[str] = (),
    *,
    vms: Iterable[VM] | None = None,
    config: PlacementConfig | None = None,
) -> str | None:
    """The best host for ``vm`` other than its own and ``exclude``, or None.

    ``used`` holds each host's vCPUs and MiB taken by VMs plus in-flight claims. Pass
    ``vms`` (the fleet's VMs) to enforce group rules; their usage is already in ``used``.
    The default config spreads by free memory, as the first version did.
    """
    others = [plan_vm(v) for v in (vms or ()) if v.name != vm.name]
    on_host: dict[str, list[int]] = {}
    for v in others:
        t = on_host.setdefault(v.host, [0, 0])
        t[0] += v.cpu_milli
        t[1] += v.memory_mib
    claims = {name: Demand(milli(c) - on_host.get(name, [0, 0])[0],
                           m - on_host.get(name, [0, 0])[1])
              for name, (c, m) in used.items()}
    st = FleetState([plan_host(h) for h in hosts], config or RUNTIME_CONFIG, others, claims)
    chosen = select(st, query(st, plan_vm(vm), exclude))
    return None if chosen is None else st.hosts[chosen].name
