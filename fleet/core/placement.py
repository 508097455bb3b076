"""Placement: which host should receive a VM, and why the others may not.

The engine filters (``fleet.core.filters``) and weighs (``fleet.core.weighers``) over a
``FleetState``. It does not visit every host per VM: the state keeps receiving hosts in a
grid of buckets over free (vCPU, memory), each sorted by the linear weigher score, and
``select`` walks the buckets best-bound first, skipping buckets that cannot fit the VM and
stopping once no bucket can beat the best host found. The answer is the same host a full
filter-then-weigh pass would pick (up to ties), with one preference first: in a fleet
with GPUs (or other devices) a VM without devices goes to the hosts of the lowest device
level that has room (``fleet.core.slots.level``: hosts without free devices first, then
hosts whose devices are nearly taken), like Nova's PCI weigher, so devices stay free for
the VMs that need them; the weighers choose within that level. A fleet without devices,
and a VM with devices, see one tier.

``pick_host`` is the runtime's entry point (one VM, live store data); ``place_stream`` places
a sequence of requests in order (offline planning, ``fleet plan place``); ``explain`` says
why each rejected host was rejected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from fleet.core.filters import ASKS, FILTERS, Filter, Query, passes, reason_code, rejections
from fleet.core.fleetstate import Demand, FleetState, demand_of
from fleet.core.models import VM, Host
from fleet.core.planmodel import PlacementConfig, PlanVM, Rule, milli, plan_host, plan_vm
from fleet.core.slots import unserved
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
    w, d = st.weights, q.demand
    if w.balance:
        cpu = share(st.free_cpu[i] - d.cpu, st.scale_cpu)
        mem = share(st.free_mem[i] - d.mem, st.scale_mem)
        s += w.balance * balance(cpu, mem)
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


def _best_in(st: FleetState, q: Query, items: list[tuple[float, int]],
             best: float, best_i: int | None) -> tuple[float, int | None]:
    """The best of ``items`` (sorted by score) if it beats ``best``, else ``best``."""
    dyn = st.dyn
    for neg, i in items:
        if dyn - neg <= best:
            break
        if passes(st, i, q):
            s = score(st, i, q)
            if s > best:
                best, best_i = s, i
            if not dyn:
                break
    return best, best_i


def _tiers(st: FleetState, q: Query) -> list[tuple[int, list[int]]]:
    vm = q.vm
    return st.tiers(vm.gpu_milli if q.demand.gpu else 0,
                    -(-vm.cpu_milli // vm.numa) if vm.numa else 0)


def roomy(st: FleetState, q: Query) -> list[int]:
    """The receiving hosts, in index order, of every bucket that may fit ``q``: a superset
    of the hosts that pass the filters, found without visiting the others."""
    x, y = st.cell_floor(q.demand)
    cells = [c for c in range(len(st.bound)) if st.cell_x[c] >= x and st.cell_y[c] >= y]
    out = [i for _, planes in _tiers(st, q) for base in planes for c in cells
           for _, i in st.buckets[base + c]]
    return sorted(out)


def _scan(st: FleetState, q: Query) -> int | None:
    """The best host of the lowest device tier that has one (see the module docstring)."""
    for tier, planes in _tiers(st, q):
        best_i = _scan_tier(st, q, tier, planes)
        if best_i is not None:
            return best_i
    return None


def _scan_tier(st: FleetState, q: Query, tier: int, planes: list[int]) -> int | None:
    best, best_i = NO_SCORE, None
    x, y = st.cell_floor(q.demand)
    filled = st.filled if tier >= 0 else st.filled_any
    tier = max(tier, 0)
    buckets, bound, cell_x, cell_y = st.buckets, st.bound, st.cell_x, st.cell_y
    for c in st.order:
        if bound[c] <= best:
            break
        if not filled[tier + c] or cell_x[c] < x or cell_y[c] < y:
            continue
        for base in planes:
            items = buckets[base + c]
            if items:
                best, best_i = _best_in(st, q, items, best, best_i)
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


def _rejected_by(st: FleetState, f: Filter, q: Query) -> list[int]:
    """Indexes of the hosts filter ``f`` rejects for ``q`` (capacity: one pass per array)."""
    d = q.demand
    if f.name == "state":
        return [i for i, receiving in enumerate(st.receiving) if not receiving]
    if f.name == "memory":
        return [i for i, free in enumerate(st.free_mem) if free < d.mem]
    if f.name == "vcpu":
        return [i for i, free in enumerate(st.free_cpu) if free < d.cpu]
    if f.name == "gpu" and d.gpu and d.gpu == q.vm.gpu_milli:
        return unserved(st.gpu_free, d.gpu)
    asks = ASKS.get(f.name)
    if asks is not None and not asks(q):
        return []
    ok = f.ok
    return [i for i in range(len(st.hosts)) if not ok(st, i, q)]


def why_nowhere(st: FleetState, q: Query, limit: int = 5) -> tuple[str, ...]:
    """Reasons no host took ``q``: per filter, how many of the candidate hosts (every
    host but the VM's own) it rejected, with an example (the first such host); filters
    that reject most come first."""
    own = st.index.get(q.vm.host)
    candidates = len(st.hosts) - (own is not None)
    if candidates < 1:
        return ("no other host in the fleet",)
    found: list[tuple[int, int, int, str]] = []  # -count, first host, filter order, reason
    for k, f in enumerate(FILTERS):
        hosts = [i for i in _rejected_by(st, f, q) if i != own]
        if hosts:
            found.append((-len(hosts), hosts[0], k, f.why(st, hosts[0], q)))
    if not found:
        return ("every host passes the filters one by one, but not together",)
    return tuple(f"{reason_code(r)} rejects {-n} of {candidates} host"
                 f"{'s' if candidates > 1 else ''} (e.g. {st.hosts[i].name}: {r})"
                 for n, i, _, r in sorted(found)[:limit])


# ------------------------------------------------------------------ request streams
@dataclass(frozen=True)
class Placement:
    """One request's outcome: its host (and the NUMA cells and devices it took there), or
    why it was rejected."""

    vm: str
    host: str | None
    reasons: tuple[str, ...] = ()
    cells: tuple[int, ...] = ()
    devices: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"vm": self.vm, "host": self.host,
                                  "reasons": list(self.reasons)}
        if self.cells:
            out["cells"] = list(self.cells)
        if self.devices:
            out["devices"] = list(self.devices)
        return out


def plus(a: Demand, b: Demand, sign: int = 1) -> Demand:
    """``a + b`` (``sign`` -1: ``a - b``) for totals of several VMs (not pinned)."""
    return Demand(a.cpu + sign * b.cpu, a.mem + sign * b.mem, a.disk + sign * b.disk,
                  a.gpu + sign * b.gpu)


def _group_demand(vms: Sequence[PlanVM]) -> dict[str, Demand]:
    total: dict[str, Demand] = {}
    for vm in vms:
        if vm.rule in (Rule.AFFINITY.value, Rule.RACK_AFFINITY.value):
            total[vm.group] = plus(total.get(vm.group, Demand(0, 0)), demand_of(vm))
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
    slot = st.slot_of.get(vm.name)
    if slot is None:
        return Placement(vm.name, st.hosts[chosen].name)
    return Placement(vm.name, st.hosts[chosen].name, (), slot.cells, slot.devices)


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
            left[vm.group] = plus(need, demand_of(vm), -1)
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
