"""Placement engine: filters, weighers, explain, the indexed search and pick_host."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as hs

from fleet.core.filters import passes, rejections
from fleet.core.fleetstate import Demand, FleetState
from fleet.core.models import VM, Host
from fleet.core.placement import (
    best_of,
    explain,
    pick_host,
    place_one,
    place_stream,
    query,
    score,
    select,
)
from fleet.core.planmodel import STACK, PlacementConfig, PlanHost, PlanVM
from tests.unit.placement_strategies import hosts, requests, violations


def _host(name: str, vcpus: float = 8, mem: int = 8192, **kw: object) -> PlanHost:
    return PlanHost(name, vcpus, mem, **kw)  # type: ignore[arg-type]


def _vm(name: str, vcpus: float = 1, mem: int = 1024, **kw: object) -> PlanVM:
    return PlanVM(name, vcpus, mem, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------ pick_host (runtime)
def test_pick_host_prefers_most_free_memory_and_skips_own_excluded_inactive() -> None:
    hs_ = [Host("h1", 8, 8192), Host("h2", 8, 8192), Host("h3", 8, 8192),
           Host("h4", 8, 16384, state="maintenance")]
    vm = VM("a", "u", "h1", 2, 1024)
    used = {"h1": (2, 1024), "h2": (2, 4096), "h3": (2, 2048)}
    assert pick_host(vm, hs_, used) == "h3"
    assert pick_host(vm, hs_, used, exclude=["h3"]) == "h2"
    assert pick_host(vm, hs_, used, exclude=["h2", "h3"]) is None


def test_pick_host_counts_used_including_claims() -> None:
    hs_ = [Host("h1", 8, 8192), Host("h2", 4, 4096)]
    vm = VM("a", "u", "h1", 2, 2048)
    assert pick_host(vm, hs_, {"h2": (3, 0)}) is None
    assert pick_host(vm, hs_, {"h2": (0, 3000)}) is None
    assert pick_host(vm, hs_, {"h2": (2, 2048)}) == "h2"


def test_pick_host_with_vms_keeps_anti_affinity_group_apart() -> None:
    hs_ = [Host("h1", 8, 8192), Host("h2", 8, 8192), Host("h3", 8, 8192)]
    vms = [VM("a", "u1", "h1", 1, 512, group="web"), VM("b", "u2", "h2", 1, 512, group="web")]
    used = {"h1": (1, 512), "h2": (1, 512), "h3": (4, 4096)}
    vm = vms[0]
    assert pick_host(vm, hs_, used) == "h2"  # no group data: most free memory
    assert pick_host(vm, hs_, used, vms=vms) == "h3"


# ------------------------------------------------------------------ filters and explain
def test_explain_names_every_reason() -> None:
    st = FleetState([
        _host("busy", 2, 2048), _host("maint", state="maintenance"),
        _host("arm", arch="aarch64"), _host("plain", arch="x86_64"),
        _host("ok", arch="x86_64", labels={"ssd": "yes"}, cpu_models=frozenset({"Skylake"})),
        _host("nomodel", arch="x86_64", labels={"ssd": "yes"}),
    ], PlacementConfig(reserved_host_memory_mib=512), [_vm("x", 2, 512, host="busy")])
    vm = _vm("new", 2, 1500, required_labels={"ssd": "yes"}, arch="x86_64",
             cpu_model="Skylake")
    ex = explain(st, vm, exclude=["plain"])
    assert ex.host == "ok"
    r = ex.rejected
    assert any(x.startswith("vcpu: needs 2, free 0") for x in r["busy"])
    assert any("reserved 512 MiB" in x for x in r["busy"])
    assert any("only active hosts receive" in x for x in r["maint"])
    assert any(x.startswith("arch:") for x in r["arm"])
    assert any(x.startswith("excluded") for x in r["plain"])
    assert any(x.startswith("labels: host lacks ssd=yes") for x in r["plain"])
    assert any(x.startswith("cpu-model:") for x in r["nomodel"])
    assert "ok" not in r


def test_allocation_ratios_and_reserved_memory() -> None:
    cfg = PlacementConfig(cpu_allocation_ratio=4.0, ram_allocation_ratio=1.5,
                          reserved_host_memory_mib=1024)
    st = FleetState([_host("h", 2, 4096)], cfg)
    assert (st.cap_cpu[0], st.cap_mem[0]) == (8000, 5120)
    assert select(st, query(st, _vm("a", 8, 5120))) == 0
    assert select(st, query(st, _vm("a", 8.5, 100))) is None
    assert select(st, query(st, _vm("a", 1, 5121))) is None


def test_claims_count_as_used() -> None:
    st = FleetState([_host("h", 4, 4096)], claims={"h": Demand(3000, 1024)})
    assert select(st, query(st, _vm("a", 1, 3072))) == 0
    assert select(st, query(st, _vm("a", 2, 100))) is None


def test_group_rules() -> None:
    hosts_ = [_host(f"h{i}", rack=f"r{i // 2}") for i in range(6)]
    st = FleetState(hosts_, PlacementConfig(weights=STACK))
    place_one(st, _vm("a1", group="a", rule="anti-affinity"))
    b = place_one(st, _vm("a2", group="a", rule="anti-affinity"))
    assert b.host != st.hosts[st.placed["a1"][1]].name
    place_one(st, _vm("f1", group="f", rule="affinity"))
    assert place_one(st, _vm("f2", group="f", rule="affinity")).host == \
        st.hosts[st.placed["f1"][1]].name
    r1 = place_one(st, _vm("ra1", group="ra", rule="rack-anti-affinity"))
    r2 = place_one(st, _vm("ra2", group="ra", rule="rack-anti-affinity"))
    assert st.rack_of[st.index[r1.host or ""]] != st.rack_of[st.index[r2.host or ""]]
    d0 = place_one(st, _vm("d0", group="d", rule="fault-domain", domain="0"))
    d1 = place_one(st, _vm("d1", group="d", rule="fault-domain", domain="1"))
    assert st.rack_of[st.index[d0.host or ""]] != st.rack_of[st.index[d1.host or ""]]
    assert not violations(st)


def test_rejected_request_carries_reasons_and_changes_nothing() -> None:
    st = FleetState([_host("h", 1, 1024)])
    out = place_stream(st, [_vm("big", 4, 512)])
    assert out[0].host is None
    assert out[0].reasons and out[0].reasons[0].startswith("vcpu rejects 1 of 1 host")
    assert not st.placed


def test_rack_affinity_group_starts_where_it_fits_whole() -> None:
    # rack r0 has the most free single host but cannot hold the whole group; r1 can
    hosts_ = [_host("big", 16, 16384, rack="r0"),
              _host("m1", 8, 8192, rack="r1"), _host("m2", 8, 8192, rack="r1"),
              _host("m3", 8, 8192, rack="r1")]
    group = [_vm(f"g{i}", 4, 4000, group="g", rule="rack-affinity") for i in range(5)]
    out = place_stream(FleetState(hosts_), group)
    assert all(p.host for p in out)
    blind = place_stream(FleetState(hosts_), group, lookahead=False)
    assert sum(1 for p in blind if p.host) == 4


# ------------------------------------------------------------------ properties
WEIGHTS = hs.sampled_from([{"ram": 1.0, "cpu": 1.0}, {"ram": -1.0, "cpu": -1.0},
                           {"ram": 1.0}, {"cpu": -0.5, "ram": 2.0},
                           {"ram": 1.0, "balance": 1.0}, {"cpu": -1.0, "balance": 2.0},
                           {"disk": 1.0, "ram": -1.0}])


@settings(max_examples=60, deadline=None)
@given(hosts(), requests(), requests(max_size=6, prefix="q"), WEIGHTS)
def test_indexed_select_matches_full_scan(hs_: list[PlanHost], vms: list[PlanVM],
                                          probes: list[PlanVM], weights: dict[str, float]
                                          ) -> None:
    st = FleetState(hs_, PlacementConfig(weights=weights))
    place_stream(st, vms, lookahead=False)
    for vm in probes:
        q = query(st, vm)
        got, full = select(st, q), best_of(st, q, range(len(hs_)))
        assert (got is None) == (full is None)
        if got is not None and full is not None:
            assert abs(score(st, got, q) - score(st, full, q)) < 1e-9
            assert passes(st, got, q)


@settings(max_examples=60, deadline=None)
@given(hosts(), requests(), WEIGHTS)
def test_stream_never_overcommits_or_breaks_rules_and_explains_rejects(
        hs_: list[PlanHost], vms: list[PlanVM], weights: dict[str, float]) -> None:
    st = FleetState(hs_, PlacementConfig(weights=weights))
    out = place_stream(st, vms)
    assert [p.vm for p in out] == [v.name for v in vms]
    for p in out:
        assert (p.host is None) == bool(p.reasons)
        assert (p.host is None) == (p.vm not in st.placed)
    assert violations(st) == []


@settings(max_examples=60, deadline=None)
@given(hosts(), requests(), requests(max_size=4, prefix="q"))
def test_fast_filter_agrees_with_explanations(hs_: list[PlanHost], vms: list[PlanVM],
                                              probes: list[PlanVM]) -> None:
    st = FleetState(hs_)
    place_stream(st, vms)
    for vm in probes:
        q = query(st, vm, exclude=[hs_[0].name])
        for i in range(len(hs_)):
            assert passes(st, i, q) == (not rejections(st, i, q))


@settings(max_examples=40, deadline=None)
@given(hosts(), requests(), requests(max_size=8, prefix="t"))
def test_trial_restores_state(hs_: list[PlanHost], vms: list[PlanVM],
                              more: list[PlanVM]) -> None:
    st = FleetState(hs_)
    place_stream(st, vms)
    before = (list(st.free_cpu), list(st.free_mem), dict(st.placed), list(st.receiving),
              [list(b) for b in st.buckets], {g: dict(c) for g, c in st.group_hosts.items() if c})
    with st.trial():
        st.set_receiving(0, not st.receiving[0])
        for name in list(st.placed)[:3]:
            st.remove(name)
        place_stream(st, more)
    after = (list(st.free_cpu), list(st.free_mem), dict(st.placed), list(st.receiving),
             [list(b) for b in st.buckets], {g: dict(c) for g, c in st.group_hosts.items() if c})
    assert after == before
