"""Evacuation planner and N+1 capacity report."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from fleet.core.capacity import n_plus_one
from fleet.core.errors import InvalidInput
from fleet.core.evacuation import STRATEGIES, EvacuationPlan, plan_evacuation, waves
from fleet.core.fleetstate import FleetState
from fleet.core.placement import place_stream
from fleet.core.planmodel import PlacementConfig, PlanHost, PlanVM
from tests.unit.placement_strategies import hosts, requests, violations


def _h(name: str, vcpus: float = 8, mem: int = 8192, rack: str = "") -> PlanHost:
    return PlanHost(name, vcpus, mem, rack=rack)


def _v(name: str, host: str, vcpus: float = 1, mem: int = 1024, **kw: str) -> PlanVM:
    return PlanVM(name, vcpus, mem, host=host, **kw)  # type: ignore[arg-type]


def _apply(st: FleetState, plan: EvacuationPlan) -> None:
    for m in plan.moves:
        vm, _ = st.remove(m.vm)
        st.add(vm, st.index[m.destination])


def test_drain_moves_everything_elsewhere_in_capped_waves() -> None:
    hosts_ = [_h("src"), _h("a"), _h("b"), _h("c")]
    vms = [_v(f"v{i}", "src", 1, 1024 * (i + 1)) for i in range(4)]
    st = FleetState(hosts_, vms=vms)
    plan = plan_evacuation(st, ["src"], max_per_source=2, max_per_destination=1)
    assert plan.complete and {m.vm for m in plan.moves} == {v.name for v in vms}
    assert all(m.destination != "src" for m in plan.moves)
    for w in range(plan.waves):
        wave = [m for m in plan.moves if m.wave == w]
        assert len(wave) <= 2
        assert max(Counter(m.destination for m in wave).values()) <= 1
    assert plan.moves[0].vm == "v3"  # the largest migrates first
    assert sorted(v.name for v in st.vms_on(0)) == ["v0", "v1", "v2", "v3"]  # unchanged


def test_anti_affinity_pair_lands_on_different_hosts() -> None:
    hosts_ = [_h("src"), _h("a"), _h("b")]
    vms = [_v("w1", "src", group="web", rule="anti-affinity"),
           _v("w2", "src", group="web", rule="anti-affinity"),
           _v("x", "src"), _v("y", "src")]
    plan = plan_evacuation(FleetState(hosts_, vms=vms), ["src"])
    dest = {m.vm: m.destination for m in plan.moves}
    assert plan.complete and dest["w1"] != dest["w2"]


def test_affinity_gang_moves_together() -> None:
    hosts_ = [_h("src"), _h("a", 4, 4096), _h("b", 8, 8192)]
    vms = [_v(f"g{i}", "src", 2, 2048, group="db", rule="affinity") for i in range(3)]
    plan = plan_evacuation(FleetState(hosts_, vms=vms), ["src"])
    assert plan.complete and {m.destination for m in plan.moves} == {"b"}


def test_vm_that_fits_nowhere_is_reported_with_reasons() -> None:
    hosts_ = [_h("src", 32, 65536), _h("a", 4, 4096)]
    vms = [_v("big", "src", 16, 1024), _v("small", "src", 1, 512)]
    plan = plan_evacuation(FleetState(hosts_, vms=vms), ["src"])
    assert [m.vm for m in plan.moves] == ["small"]
    assert [u.vm for u in plan.unplaced] == ["big"]
    reasons = plan.unplaced[0].reasons
    assert reasons[0].startswith("vcpu rejects 1 of 1 host (e.g. a:")
    assert not any("src" in r for r in reasons)  # its own host is no candidate


def test_hosts_drained_together_never_receive_each_others_vms() -> None:
    hosts_ = [_h("s1", 8, 8192), _h("s2", 8, 8192), _h("a", 4, 4096), _h("b", 4, 4096)]
    vms = [_v(f"v{i}", "s1" if i < 3 else "s2", 1, 1024) for i in range(6)]
    vms.append(_v("big", "s1", 6, 1024))
    plan = plan_evacuation(FleetState(hosts_, vms=vms), ["s1", "s2"])
    assert plan.sources == ("s1", "s2")
    assert sorted(m.vm for m in plan.moves) == [f"v{i}" for i in range(6)]
    assert {m.destination for m in plan.moves} <= {"a", "b"}
    assert {m.source for m in plan.moves} == {"s1", "s2"}
    [big] = plan.unplaced
    assert big.source == "s1"
    assert any(r.startswith("state rejects 1 of 3 hosts (e.g. s2:") for r in big.reasons)
    assert any(r.startswith("vcpu rejects 2 of 3 hosts (e.g. a:") for r in big.reasons)


def test_fallback_packing_beats_spread_when_spread_strands_a_vm() -> None:
    hosts_ = [_h("src", 16, 16384), _h("a", 4, 1024), _h("b", 2, 8192)]
    vms = [_v("cpu", "src", 4, 512), _v("mem", "src", 1, 6000), _v("tiny", "src", 1, 512)]
    engine = plan_evacuation(FleetState(hosts_, vms=vms), ["src"], strategies=["engine"])
    best = plan_evacuation(FleetState(hosts_, vms=vms), ["src"])
    assert len(best.moves) >= len(engine.moves)


def test_bad_arguments() -> None:
    st = FleetState([_h("a")])
    with pytest.raises(InvalidInput):
        plan_evacuation(st, ["nope"])
    with pytest.raises(InvalidInput):
        plan_evacuation(st, ["a"], strategies=["magic"])
    with pytest.raises(InvalidInput):
        waves([], 0, 1)


def test_n_plus_one() -> None:
    ok = FleetState([_h("a"), _h("b")], vms=[_v("x", "a", 4, 4096)])
    assert n_plus_one(ok).ok
    tight = FleetState([_h("a"), _h("b")], vms=[_v("x", "a", 6, 4096), _v("y", "b", 6, 4096)])
    report = n_plus_one(tight)
    assert not report.ok and report.failing == ("a", "b")
    assert report.to_dict()["hosts"][0]["stranded"] == ["x"]  # type: ignore[index]


# ------------------------------------------------------------------ properties
def _fleet(hs_: list[PlanHost], vms: list[PlanVM], weights: dict[str, float]) -> FleetState:
    st = FleetState(hs_, PlacementConfig(weights=weights))
    place_stream(st, vms)
    return st


@settings(max_examples=50, deadline=None)
@given(hosts(min_size=2), requests(max_size=30), hs.integers(0, 11),
       hs.sampled_from([{"ram": 1.0, "cpu": 1.0}, {"ram": -1.0, "cpu": -1.0},
                        {"ram": 1.0, "balance": 1.0}]),
       hs.integers(1, 3), hs.integers(1, 2))
def test_plan_is_safe_and_complete_in_accounting(
        hs_: list[PlanHost], vms: list[PlanVM], pick: int, weights: dict[str, float],
        per_src: int, per_dst: int) -> None:
    st = _fleet(hs_, vms, weights)
    source = hs_[pick % len(hs_)].name
    on_source = {vm.name for vm in st.vms_on(st.index[source])}
    plan = plan_evacuation(st, [source], max_per_source=per_src, max_per_destination=per_dst)
    moved = [m.vm for m in plan.moves]
    left = [u.vm for u in plan.unplaced]
    # every VM of the source is moved or reported, exactly once, with reasons
    assert sorted(moved + left) == sorted(on_source)
    assert all(u.reasons for u in plan.unplaced)
    for w in range(plan.waves):
        wave = [m for m in plan.moves if m.wave == w]
        assert len(wave) <= per_src
        assert max(Counter(m.destination for m in wave).values()) <= per_dst
    # applying the plan overcommits nothing and breaks no rule; nothing moves to the source
    # or to a host that does not receive
    _apply(st, plan)
    assert all(m.destination != source and st.receiving[st.index[m.destination]]
               for m in plan.moves)
    assert violations(st) == []


@settings(max_examples=40, deadline=None)
@given(hosts(min_size=2), requests(max_size=30), hs.integers(0, 11))
def test_plan_places_at_least_as_many_as_each_packing(
        hs_: list[PlanHost], vms: list[PlanVM], pick: int) -> None:
    st = _fleet(hs_, vms, {"ram": -1.0, "cpu": -1.0})
    source = hs_[pick % len(hs_)].name
    best = plan_evacuation(st, [source], explain=False)
    for strategy in STRATEGIES:
        alone = plan_evacuation(st, [source], strategies=[strategy], explain=False)
        assert len(best.moves) >= len(alone.moves)
