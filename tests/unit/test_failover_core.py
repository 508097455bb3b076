"""The failover core's pieces: config, host transitions, state round-trips, the lease,
``decide`` called directly, the invariant checker itself, and a property test over
random fault schedules."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.core.errors import InvalidInput, InvalidTransition
from fleet.core.failover import (
    Alert,
    FailoverState,
    Fence,
    FenceResult,
    Lease,
    Observation,
    OperatorConfirm,
    Recover,
    RecoverResult,
    claim_lease,
    decide,
    may_act,
)
from fleet.core.failover_sim import SimHost, SimMonitor, Simulation
from fleet.core.health import (
    WITNESSED,
    FailoverConfig,
    Health,
    HostHealth,
    check_transition,
    step_host,
)
from fleet.core.models import VM, Host, HostState
from fleet.core.recovery import Pending

CFG = FailoverConfig()


def _vm(name: str, host: str, **kw: object) -> VM:
    return VM(name, name, host, 2, 2048, ha=True, **kw)  # type: ignore[arg-type]


def test_config_validation_and_mapping() -> None:
    with pytest.raises(InvalidInput):
        FailoverConfig(suspect_after_s=6, down_after_s=5)
    with pytest.raises(InvalidInput):
        FailoverConfig(storm_share=0)
    with pytest.raises(InvalidInput):
        FailoverConfig(fence_attempts=0)
    cfg = FailoverConfig.from_mapping({"failover_down_after_s": 8.0, "storm_share": 0.3,
                                       "redis_url": "ignored"})
    assert cfg.down_after_s == 8.0 and cfg.storm_share == 0.3


def test_transitions_are_checked() -> None:
    check_transition(Health.FENCE_FAILED, Health.FENCED)
    with pytest.raises(InvalidTransition):
        check_transition(Health.FENCING, Health.ACTIVE)
    with pytest.raises(InvalidTransition):
        check_transition(Health.RECOVERING, Health.ACTIVE)


def test_state_round_trips_through_json() -> None:
    state = FailoverState(
        hosts={"h1": HostHealth(Health.FENCING, 3.0, 1, 28.0, "x", "", False, 1.5)},
        pending={"a": Pending("a", "h1", "h2", 4.0)},
        excluded={"a": {"h3": 70.0}}, unplaced=frozenset({"b"}), held=frozenset({"h9"}))
    again = FailoverState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state and again.storm


def test_lease_claim_renew_standby_takeover() -> None:
    first = claim_lease(None, "m1", 0.0, 5.0)
    assert first == Lease("m1", 5.0, 1)
    assert claim_lease(first, "m2", 1.0, 5.0) is None
    assert claim_lease(first, "m1", 2.0, 5.0) == Lease("m1", 7.0, 1)
    taken = claim_lease(first, "m2", 5.0, 5.0)
    assert taken == Lease("m2", 10.0, 2)
    assert may_act(taken, "m2", 9.0) and not may_act(taken, "m2", 9.0, margin_s=1.0)
    assert not may_act(taken, "m1", 6.0) and not may_act(None, "m1", 0.0)


def _obs(beats: dict[str, float], vms: list[VM], *events: object,
         maintenance: tuple[str, ...] = ()) -> Observation:
    hosts = [Host(h, 16, 32768, state=(HostState.MAINTENANCE if h in maintenance
                                       else HostState.ACTIVE).value) for h in beats]
    return Observation(hosts, beats, vms, tuple(events))  # type: ignore[arg-type]


def test_decide_walks_a_dead_host_to_recovered() -> None:
    beats = {"h1": 0.0, "h2": 10.0, "h3": 10.0}
    vms = [_vm("a", "h1", priority=1), _vm("b", "h1", priority=5)]
    d = decide(_obs(beats, vms), FailoverState(), CFG, 10.0)
    assert d.of(Fence) == [Fence("h1", 1, CFG.fence_timeout_s)]
    assert [t.new for t in d.transitions] == [Health.DOWN, Health.FENCING]
    d = decide(_obs(beats, vms, FenceResult("h1", True)), d.state, CFG, 11.0)
    assert [r.vm for r in d.of(Recover)] == ["b", "a"]
    assert d.state.hosts["h1"].state is Health.RECOVERING
    moved = [_vm("a", r.target) for r in d.of(Recover)]
    d = decide(_obs(beats, moved, RecoverResult("a", "h2", True),
                    RecoverResult("b", "h3", True)), d.state, CFG, 12.0)
    assert d.state.hosts["h1"].state is Health.RECOVERED and not d.state.pending


def test_decide_ignores_events_for_unknown_hosts_and_maintenance() -> None:
    beats = {"h1": 0.0, "h2": 10.0}
    d = decide(_obs(beats, [], OperatorConfirm("ghost"), maintenance=("h1",)),
               FailoverState(), CFG, 10.0)
    assert d.actions == () and d.state.hosts["h1"].state is Health.ACTIVE


def test_failed_restart_excludes_the_target_for_a_while() -> None:
    beats = {"h1": 0.0, "h2": 100.0, "h3": 100.0}
    state = FailoverState(hosts={"h1": HostHealth(Health.RECOVERING, 90.0)},
                          pending={"a": Pending("a", "h1", "h2", 99.0)})
    d = decide(_obs(beats, [_vm("a", "h1")], RecoverResult("a", "h2", False, "boom")),
               state, CFG, 100.0)
    assert [r.target for r in d.of(Recover)] == ["h3"]
    assert d.state.excluded["a"]["h2"] == 100.0 + CFG.exclude_for_s
    assert any(a.kind == "restart_failed" for a in d.of(Alert))


def test_takeover_resends_unfinished_fences() -> None:
    beats = {"h1": 0.0, "h2": 10.0, "h3": 10.0}
    state = FailoverState(hosts={"h1": HostHealth(Health.FENCING, 6.0, 1, 31.0)},
                          pending={"x": Pending("x", "h9", "h2", 6.0)})
    obs = _obs(beats, [])
    d = decide(Observation(obs.hosts, obs.last_beat, [], takeover=True), state, CFG, 10.0)
    assert d.of(Fence) == [Fence("h1", 1, CFG.fence_timeout_s)] and not d.state.pending


# -- the checker must catch what it claims to catch --------------------------------------


def test_checker_catches_a_lying_fence_agent() -> None:
    sim = Simulation.build([SimHost("h1", fence_mode="lie"), SimHost("h2"), SimHost("h3")],
                           [_vm("a", "h1")])
    sim.isolate("h1")
    sim.run(15)
    assert any("runs on" in v or "while running" in v for v in sim.violations)


def test_checker_catches_overcommit_and_anti_affinity() -> None:
    sim = Simulation.build([SimHost("h1", vcpus=2)],
                           [_vm("a", "h1", group="g"), _vm("b", "h1", group="g")])
    sim.check()
    assert any("overcommitted" in v for v in sim.violations)
    assert any("anti-affinity" in v for v in sim.violations)


# -- property: random fault schedules never break the invariants -----------------------

FAULTS = st.lists(
    st.tuples(st.sampled_from(["power_off", "isolate", "heal", "flap", "fence_fail",
                               "fence_hang", "confirm", "crash", "wait"]),
              st.integers(1, 5), st.integers(1, 12)),
    max_size=6)


def _inject(sim: Simulation, fault: str, host: str) -> None:
    h = sim.hosts[host]
    if fault == "power_off":
        sim.power_off(host)
    elif fault in ("isolate", "heal"):
        sim.isolate(host, cut=fault == "isolate")
    elif fault == "flap":
        h.beating = not h.beating
    elif fault in ("fence_fail", "fence_hang"):
        h.fence_mode = fault.removeprefix("fence_")
    elif fault == "confirm" and not h.powered:
        sim.operator(OperatorConfirm(host))  # a truthful operator only
    elif fault == "crash":
        alive = [m for m in sim.monitors if m.alive]
        if len(alive) > 1:
            alive[0].crash = "mid_actions"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FAULTS, st.booleans())
def test_random_faults_keep_the_invariants(faults: list[tuple[str, int, int]],
                                           dup: bool) -> None:
    hosts = [SimHost(f"h{i}") for i in range(1, 6)]
    vms = [_vm(f"v{i}", f"h{i % 5 + 1}", priority=i % 3, group="g" if i < 3 else "")
           for i in range(10)]
    sim = Simulation.build(hosts, vms, monitors=[SimMonitor("m1"), SimMonitor("m2")],
                           duplicate_recovers=dup)
    for fault, n, wait in faults:
        _inject(sim, fault, f"h{n}")
        sim.run(wait)
        assert sim.violations == []
    # heal everything; a truthful operator confirms the hosts that are really off
    for h in sim.hosts.values():
        h.network = h.beating = True
        h.fence_mode = "ok"
        if not h.powered:
            sim.operator(OperatorConfirm(h.name))
    sim.run(90)
    assert sim.violations == []
    if sum(h.powered for h in sim.hosts.values()) >= 3:
        assert sim.all_ha_running(), sim.decisions[-1].unplaced


def test_witness_holds_a_down_host_back_to_suspect_and_never_fences() -> None:
    cfg = FailoverConfig()
    down = HostHealth(Health.DOWN, since=10.0, last_beat=0.0)
    step = step_host(down, age=20.0, may_fence=True, cfg=cfg, now=20.0, witnessed=True)
    assert step.health.state is Health.SUSPECT and step.health.detail == WITNESSED
    assert not step.fence and step.alert == "agent_silent"
    again = step_host(step.health, age=21.0, may_fence=True, cfg=cfg, now=21.0,
                      witnessed=True)
    assert again.health == step.health and not again.alert  # the alert is raised once
    gone = step_host(step.health, age=22.0, may_fence=True, cfg=cfg, now=22.0)
    assert gone.fence and gone.health.state is Health.FENCING


def test_witness_window_must_not_be_negative() -> None:
    with pytest.raises(InvalidInput):
        FailoverConfig(witness_window_s=-1)
