"""NUMA cells and devices in placement: filters, slots, undo, claims, the index, verify."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as hs

from bench import baselines
from fleet.core.evacuation import plan_evacuation
from fleet.core.filters import Query, passes, rejections
from fleet.core.fleetstate import Demand, FleetState
from fleet.core.placement import (
    best_of,
    explain,
    place_one,
    place_stream,
    query,
    score,
    select,
    why_nowhere,
)
from fleet.core.planmodel import STACK, NumaCell, PlacementConfig, PlanHost, PlanVM
from fleet.core.slots import Slot, level

MIB = 1024


def _numa_host(name: str, *cells: int, **kw: object) -> PlanHost:
    """A host whose cells have ``cells`` vCPUs each and 1 GiB per vCPU."""
    return PlanHost(name, sum(cells), sum(cells) * MIB,  # type: ignore[arg-type]
                    numa_cells=tuple(NumaCell(c, c * MIB) for c in cells), **kw)


def _vm(name: str, vcpus: float, numa: int = 0, gpus: float = 0.0, **kw: object) -> PlanVM:
    return PlanVM(name, vcpus, int(vcpus * MIB), numa=numa, gpus=gpus,  # type: ignore[arg-type]
                  **kw)


def _cells(st: FleetState, i: int = 0) -> list[tuple[int, int]]:
    return list(zip(st.cell_cpu[i], st.cell_mem[i], strict=True))


def _snapshot(st: FleetState) -> object:
    return (list(st.free_cpu), list(st.free_mem), [list(c) for c in st.cell_cpu],
            [list(c) for c in st.cell_mem], [list(g) for g in st.gpu_free], dict(st.slot_of),
            dict(st.placed), [list(b) for b in st.buckets])


# ------------------------------------------------------------------ NUMA
def test_pinned_vm_must_fit_one_cell_and_a_floating_one_only_the_totals() -> None:
    st = FleetState([_numa_host("h", 4, 4)])
    pinned = place_one(st, _vm("big", 6, numa=1))
    assert pinned.host is None and pinned.reasons[0].startswith("numa rejects 1 of 1 host")
    assert place_one(st, _vm("float", 6)).host == "h"
    assert _cells(st) == [(4000, 4 * MIB), (4000, 4 * MIB)]  # a floating VM takes no cell


def test_cell_is_chosen_tightest_first_and_remembered() -> None:
    st = FleetState([_numa_host("h", 8, 4)])
    out = place_one(st, _vm("a", 4, numa=1))
    assert (out.host, out.cells) == ("h", (1,))
    assert _cells(st) == [(8000, 8 * MIB), (0, 0)]
    assert place_one(st, _vm("b", 2, numa=1)).cells == (0,)
    st.remove("a")
    assert _cells(st) == [(6000, 6 * MIB), (4000, 4 * MIB)]


def test_vm_on_two_nodes_takes_half_on_each_and_needs_two_nodes() -> None:
    st = FleetState([_numa_host("one", 8), _numa_host("two", 4, 4)])
    out = place_one(st, _vm("wide", 8, numa=2))
    assert (out.host, out.cells) == ("two", (0, 1))
    assert _cells(st, 1) == [(0, 0), (0, 0)]
    reasons = rejections(st, 0, query(st, _vm("x", 2, numa=2)))
    assert reasons == ["numa: VM is pinned to 2 NUMA nodes, host has 1"]


def test_host_without_cells_does_not_check_pinning() -> None:
    st = FleetState([PlanHost("plain", 8, 8 * MIB)])
    assert place_one(st, _vm("p", 8, numa=2)).host == "plain"
    assert st.slot_of == {}


def test_explain_says_which_nodes_lack_room() -> None:
    st = FleetState([_numa_host("h", 4, 4)], vms=[_vm("a", 3, numa=1, host="h")])
    ex = explain(st, _vm("b", 4, numa=1, host=""))
    assert ex.host == "h"  # cell 1 is free
    st.add(_vm("c", 3, numa=1), 0)
    why = explain(st, _vm("b", 2, numa=1)).rejected["h"]  # the totals have room
    assert why == ("numa: VM needs 2 vCPUs and 2048 MiB on one NUMA node, nodes have free "
                   "1 vCPUs/1024 MiB, 1 vCPUs/1024 MiB",)


def test_recorded_cells_of_a_running_vm_are_kept() -> None:
    vm = _vm("a", 2, numa=1, host="h", cells=(1,))
    st = FleetState([_numa_host("h", 4, 4)], vms=[vm])
    assert st.slot_of["a"] == Slot((1,), ()) and _cells(st)[1] == (2000, 2 * MIB)
    bad = _vm("b", 2, numa=1, host="h", cells=(5,))  # not a cell of the host: re-chosen
    assert FleetState([_numa_host("h", 4, 4)], vms=[bad]).slot_of["b"].cells == (0,)


# ------------------------------------------------------------------ devices
def test_gpu_shares_go_best_fit_and_whole_gpus_need_free_devices() -> None:
    st = FleetState([PlanHost("g", 32, 64 * MIB, gpus=2)])
    assert place_one(st, _vm("a", 1, gpus=0.5)).devices == (0,)
    assert place_one(st, _vm("b", 1, gpus=0.6)).devices == (1,)
    assert place_one(st, _vm("c", 1, gpus=0.4)).devices == (1,)  # tightest: 0.4 left
    assert st.gpu_free[0] == [500, 0]
    whole = place_one(st, _vm("d", 1, gpus=1))
    assert whole.host is None
    assert "gpu: VM needs 1 whole GPUs, 0 of the host's 2 are free" in whole.reasons[0]
    st.remove("b")
    st.remove("c")
    assert place_one(st, _vm("d", 1, gpus=1)).devices == (1,)


def test_vms_without_gpus_go_to_hosts_without_free_devices_first() -> None:
    hosts = [PlanHost("gpu", 64, 64 * MIB, gpus=1), PlanHost("cpu", 8, 8 * MIB)]
    st = FleetState(hosts)  # spread: "gpu" has most room, but its device is free
    assert place_one(st, _vm("a", 4)).host == "cpu"
    assert place_one(st, _vm("b", 8)).host == "gpu"  # no room left on "cpu"
    assert place_one(st, _vm("c", 1, gpus=1)).host == "gpu"


def test_host_without_devices_rejects_gpu_vms_only() -> None:
    st = FleetState([PlanHost("cpu", 8, 8 * MIB), PlanHost("gpu", 8, 8 * MIB, gpus=1)])
    assert place_one(st, _vm("a", 1, gpus=0.3)).host == "gpu"
    assert rejections(st, 0, query(st, _vm("b", 1, gpus=0.3))) == [
        "gpu: VM needs 0.3 GPU, host has none"]
    assert passes(st, 0, query(st, _vm("c", 1)))


# ------------------------------------------------------------------ undo, claims
def test_trial_and_evacuation_leave_cells_and_devices_as_they_were() -> None:
    hosts = [_numa_host("a", 8, 8, gpus=2), _numa_host("b", 8, 8, gpus=2),
             _numa_host("c", 4, 4, gpus=1)]
    vms = [_vm("p", 4, numa=1, gpus=0.5, host="a"), _vm("q", 8, numa=2, gpus=1, host="a"),
           _vm("r", 2, numa=1, host="b")]
    st = FleetState(hosts, vms=vms)
    before = _snapshot(st)
    plan = plan_evacuation(st, ["a"])
    assert plan.complete and _snapshot(st) == before
    with st.trial():
        st.remove("p")
        st.add(_vm("s", 8, numa=1, gpus=2), 1)
        st.remove("q")
    assert _snapshot(st) == before


def test_claims_of_pinned_vms_take_and_release_cells_and_devices() -> None:
    d = Demand(4000, 4 * MIB, 0, 500, 1)
    st = FleetState([_numa_host("h", 4, 8, gpus=1)], claims={"h": d})
    assert _cells(st) == [(0, 0), (8000, 8 * MIB)] and st.gpu_free[0] == [500]
    st.claim("h", d, +1)
    assert _cells(st) == [(0, 0), (4000, 4 * MIB)] and st.gpu_free[0] == [0]
    st.claim("h", d, -1)
    st.claim("h", d, -1)
    assert _cells(st) == [(4000, 4 * MIB), (8000, 8 * MIB)] and st.gpu_free[0] == [1000]


def test_affinity_gang_members_each_need_their_cell() -> None:
    hosts = [_numa_host("src", 16), _numa_host("dst", 6, 6)]
    vms = [_vm(f"m{k}", 4, numa=1, host="src", group="g", rule="affinity") for k in range(3)]
    plan = plan_evacuation(FleetState(hosts, vms=vms), ["src"])
    assert len(plan.moves) == 0 and len(plan.unplaced) == 3  # totals fit, cells do not


# ------------------------------------------------------------------ index and reasons
@hs.composite
def _fleets(draw: hs.DrawFn) -> tuple[list[PlanHost], list[PlanVM]]:
    hosts = []
    for i in range(draw(hs.integers(1, 10))):
        cells = draw(hs.sampled_from([(), (4, 4), (8, 4), (2, 2, 2, 2), (16,)]))
        gpus = draw(hs.sampled_from([0, 0, 1, 2, 8]))
        state = draw(hs.sampled_from(["active"] * 6 + ["maintenance"]))
        hosts.append(_numa_host(f"h{i}", *cells, gpus=gpus, state=state) if cells
                     else PlanHost(f"h{i}", 8, 8 * MIB, gpus=gpus, state=state))
    vms = [_vm(f"v{k}", draw(hs.sampled_from([1, 2, 3, 4, 6])),
               numa=draw(hs.sampled_from([0, 1, 1, 2])),
               gpus=draw(hs.sampled_from([0, 0, 0.25, 0.5, 0.75, 1, 2])))
           for k in range(draw(hs.integers(0, 30)))]
    return hosts, vms


def _first_tier(st: FleetState, q: Query) -> list[int]:
    """The hosts a full scan weighs: for a VM without GPUs, those of the lowest device
    level among the hosts that pass."""
    ok = [i for i in range(len(st.hosts)) if passes(st, i, q)]
    if q.vm.gpus or not ok:
        return ok
    low = min(level(st.gpu_free[i]) for i in ok)
    return [i for i in ok if level(st.gpu_free[i]) == low]


def _reference_why(st: FleetState, vm: PlanVM) -> set[tuple[str, int]]:
    q = query(st, vm)
    counts: dict[str, int] = {}
    for i in range(len(st.hosts)):
        for r in rejections(st, i, q):
            code = r.split(":", 1)[0]
            counts[code] = counts.get(code, 0) + 1
    return set(counts.items())


@settings(max_examples=60, deadline=None)
@given(_fleets(), hs.sampled_from([None, STACK]))
def test_stream_keeps_every_cell_and_device_within_capacity(
        fleet: tuple[list[PlanHost], list[PlanVM]], weights: object) -> None:
    hosts, vms = fleet
    config = PlacementConfig(weights=weights) if weights else PlacementConfig()  # type: ignore[arg-type]
    st = FleetState(hosts, config)
    for vm in vms:
        q = query(st, vm)
        chosen, full = select(st, q), best_of(st, q, _first_tier(st, q))
        assert (chosen is None) == (full is None)
        if chosen is not None and full is not None:  # the index finds the best host
            assert abs(score(st, chosen, q) - score(st, full, q)) < 1e-9
        else:
            got = {(r.split(" rejects ")[0], int(r.split(" rejects ")[1].split()[0]))
                   for r in why_nowhere(st, q, limit=99)}
            assert got == _reference_why(st, vm)
        place_one(st, vm)
    where = {n: st.hosts[i].name for n, (_, i) in st.placed.items()}
    slots = {n: (s.cells, s.devices) for n, s in st.slot_of.items()}
    check = baselines.verify(hosts, vms, where, slots)
    assert check == {"overcommitted_hosts": 0, "rule_violations": 0, "numa_violations": 0,
                     "gpu_violations": 0}


# ------------------------------------------------------------------ bench verifier, baselines
def test_verify_counts_cell_and_device_overcommit_and_missing_slots() -> None:
    hosts = [_numa_host("h", 4, 4, gpus=1)]
    vms = [_vm("a", 3, numa=1), _vm("b", 3, numa=1), _vm("c", 1, gpus=0.6),
           _vm("d", 1, gpus=0.6)]
    where = dict.fromkeys(("a", "b", "c", "d"), "h")
    ok = {"a": ((0,), ()), "b": ((1,), ()), "c": ((), (0,))}
    assert baselines.verify(hosts, vms[:3], where, ok)["numa_violations"] == 0
    same_cell = {**ok, "b": ((0,), ())}
    assert baselines.verify(hosts, vms[:3], where, same_cell)["numa_violations"] == 2
    assert baselines.verify(hosts, vms[:3], where, {})["numa_violations"] == 2
    shared = {**ok, "d": ((), (0,))}
    check = baselines.verify(hosts, vms, where, shared)
    assert (check["gpu_violations"], check["overcommitted_hosts"]) == (1, 0)


def test_baselines_respect_cells_and_devices() -> None:
    hosts = [_numa_host("h", 4, 4, gpus=1)]
    reqs = [_vm("a", 6, numa=1), _vm("b", 4, numa=1), _vm("c", 2, numa=2, gpus=0.5),
            _vm("d", 1, gpus=0.6), _vm("e", 1, gpus=1)]
    for name in baselines.BASELINES:
        where, slots = baselines.place(name, hosts, reqs)
        check = baselines.verify(hosts, reqs, where, slots)
        assert check["numa_violations"] == check["gpu_violations"] == 0
        assert "a" not in where and "e" not in where and "d" in where


def test_engine_places_a_stream_at_least_as_well_as_first_fit_here() -> None:
    hosts = [_numa_host("h", 8, 4)]
    reqs = [_vm("small", 4, numa=1), _vm("big", 8, numa=1)]
    out = place_stream(FleetState(hosts), reqs)
    assert [p.cells for p in out] == [(1,), (0,)]  # tightest cell first keeps room for big
    assert len(baselines.place("first-fit-decreasing", hosts, reqs)[0]) == 2


def test_gpu_weigher_keeps_vcpus_for_free_gpus_and_is_off_without_devices() -> None:
    hosts = [PlanHost("a", 16, 64 * MIB, gpus=2), PlanHost("b", 16, 64 * MIB, gpus=2)]
    vms = [_vm("cpu-heavy", 14, host="a"), _vm("half", 8, gpus=1, host="b")]
    st = FleetState(hosts, PlacementConfig(weights=STACK), vms)
    # stacking alone would take "a" (least free); "a" has 2 vCPUs left for 2 free GPUs
    assert place_one(st, _vm("job", 1, gpus=1)).host == "b"
    plain = FleetState([PlanHost("c", 8, 8 * MIB)], PlacementConfig(weights=STACK))
    assert plain.gpu_weight == 0.0 and plain.score == [-2.0]
