"""Failover scenario suite, in the spirit of Proxmox HA's regression tests.

Each scenario builds a simulated fleet (``fleet.core.failover_sim``) with a
deterministic clock, injects faults and operator commands, and runs the monitor's
``decide`` loop. The simulation checks the invariants at every step (never two running
copies, never a restart before the host is confirmed off, no overcommit, anti-affinity
kept, records truthful); every scenario ends with ``assert_safe``.
"""

from __future__ import annotations

from typing import Any

import pytest

from fleet.core.failover import (
    Fence,
    FenceResult,
    MarkDown,
    OperatorActivate,
    OperatorConfirm,
    OperatorFence,
    Recover,
)
from fleet.core.failover_sim import SimHost, SimMonitor, Simulation
from fleet.core.health import FailoverConfig, Health
from fleet.core.models import VM, VMState


def vm(name: str, host: str, *, ha: bool = True, prio: int = 0, group: str = "",
       vcpus: int = 2, mem: int = 4096, state: str = VMState.RUNNING.value) -> VM:
    return VM(name, f"uuid-{name}", host, vcpus, mem, state=state, ha=ha, priority=prio,
              group=group)


def fleet(n: int = 4, vms: list[VM] | None = None, **kwargs: Any) -> Simulation:
    """``n`` hosts h1..hn (16 vCPU, 32 GiB); by default three HA VMs on h1."""
    hosts = [SimHost(f"h{i}") for i in range(1, n + 1)]
    if vms is None:
        vms = [vm("a", "h1"), vm("b", "h1"), vm("c", "h1"), vm("d", "h2")]
    sim = Simulation.build(hosts, vms, **kwargs)
    sim.run(2)
    return sim


def assert_safe(sim: Simulation) -> None:
    assert sim.violations == []


def fenced_at(sim: Simulation, host: str) -> list[float]:
    return [t for t, _, a in sim.actions if isinstance(a, Fence) and a.host == host]


def transitions(sim: Simulation, host: str) -> list[str]:
    return [t.new.value for d in sim.decisions for t in d.transitions if t.host == host]


# -- power and network loss --------------------------------------------------------


def test_power_loss_restarts_ha_vms_within_15s() -> None:
    sim = fleet()
    sim.power_off("h1")
    took = sim.run_until(sim.all_ha_running)
    assert took <= 15.0
    assert transitions(sim, "h1") == ["suspect", "down", "fencing", "fenced", "recovering",
                                      "recovered"]
    assert {sim.vms[v].host for v in "abc"} <= {"h2", "h3", "h4"}
    assert len(fenced_at(sim, "h1")) == 1
    assert_safe(sim)


def test_network_loss_fences_before_any_copy_starts() -> None:
    sim = fleet()
    sim.isolate("h1")
    sim.run_until(sim.recovered_from("h1"))
    first_start = min(t for t, _, _ in sim.starts)
    assert not sim.hosts["h1"].powered
    assert fenced_at(sim, "h1")[0] < first_start
    assert_safe(sim)


def test_short_blip_goes_suspect_and_back_without_fencing() -> None:
    sim = fleet()
    sim.isolate("h1")
    sim.run(3.5)
    assert sim.health("h1") is Health.SUSPECT
    sim.isolate("h1", cut=False)
    sim.run(10)
    assert sim.health("h1") is Health.ACTIVE
    assert not sim.kinds(Fence)
    assert_safe(sim)


def test_flapping_heartbeats_never_fence() -> None:
    sim = fleet()
    for _ in range(6):
        sim.hosts["h1"].beating = False
        sim.run(4.5)
        sim.hosts["h1"].beating = True
        sim.run(1)
    assert "suspect" in transitions(sim, "h1")
    assert "down" not in transitions(sim, "h1")
    assert not sim.kinds(Fence) and not sim.kinds(Recover)
    assert_safe(sim)


def test_down_then_back_before_fencing_when_storm_holds() -> None:
    sim = fleet(n=2, vms=[vm("a", "h1")])
    sim.isolate("h1")
    sim.isolate("h2")
    sim.run(8)
    assert sim.health("h1") is Health.DOWN
    sim.isolate("h1", cut=False)
    sim.isolate("h2", cut=False)
    sim.run(2)
    assert sim.health("h1") is Health.ACTIVE
    assert sim.alerts("host_back")
    assert not sim.kinds(Fence)
    assert_safe(sim)


# -- the witness: a dead agent on a live host ---------------------------------------


def witnessed(n: int = 4, **kwargs: Any) -> Simulation:
    sim = fleet(n, **kwargs)
    for h in sim.hosts.values():
        h.witness = True
    return sim


def test_dead_agent_on_a_live_host_is_not_fenced() -> None:
    sim = witnessed()
    sim.hosts["h1"].beating = False
    sim.run(30)
    assert sim.health("h1") is Health.SUSPECT
    assert "down" not in transitions(sim, "h1")
    assert not sim.kinds(Fence) and not sim.kinds(Recover)
    assert [a.subject for a in sim.alerts("agent_silent")] == ["h1"]  # once
    assert sim.hosts["h1"].running == {"a", "b", "c"}
    sim.hosts["h1"].beating = True
    sim.run(2)
    assert sim.health("h1") is Health.ACTIVE
    assert_safe(sim)


def test_dead_agent_then_power_loss_fences_once_the_witness_is_silent() -> None:
    sim = witnessed()
    sim.hosts["h1"].beating = False
    sim.run(10)
    off = sim.now
    sim.power_off("h1")
    took = sim.run_until(sim.all_ha_running)
    assert took <= sim.cfg.witness_window_s + 15.0
    fenced = fenced_at(sim, "h1")
    assert len(fenced) == 1 and fenced[0] >= off + sim.cfg.witness_window_s - sim.dt
    assert transitions(sim, "h1")[-5:] == ["down", "fencing", "fenced", "recovering",
                                           "recovered"]
    assert_safe(sim)


def test_confirm_down_refused_while_the_witness_answers() -> None:
    sim = witnessed()
    sim.hosts["h1"].fence_mode = "manual"  # only an operator can confirm h1 is off
    sim.hosts["h1"].beating = False
    sim.run(10)
    sim.operator(OperatorConfirm("h1"))
    sim.run(5)
    assert [a.subject for a in sim.alerts("refused")] == ["h1"]
    assert sim.health("h1") is Health.SUSPECT and not sim.kinds(Recover)
    sim.power_off("h1")  # now it is really off: the same confirm is accepted
    sim.run_until(lambda: sim.health("h1") is Health.FENCE_FAILED)
    sim.operator(OperatorConfirm("h1"))
    sim.run_until(sim.all_ha_running)
    assert len(sim.alerts("refused")) == 1
    assert_safe(sim)


def test_witness_cannot_reach_an_isolated_host_so_it_is_fenced() -> None:
    sim = witnessed()
    sim.isolate("h1")
    took = sim.run_until(sim.recovered_from("h1"))
    assert took <= 15.0
    assert not sim.alerts("agent_silent")
    assert not sim.hosts["h1"].powered
    assert_safe(sim)


def test_agents_die_fleet_wide_nobody_is_fenced() -> None:
    """A bad agent rollout: most agents die, every host still answers its witness."""
    sim = witnessed()
    for h in ("h1", "h2", "h3"):
        sim.hosts[h].beating = False
    sim.run(30)
    assert not sim.kinds(Fence) and not sim.kinds(Recover)
    assert sorted(a.subject for a in sim.alerts("agent_silent")) == ["h1", "h2", "h3"]
    for h in ("h1", "h2", "h3"):
        sim.hosts[h].beating = True
    sim.run(3)
    assert all(sim.health(h) is Health.ACTIVE for h in sim.hosts)
    assert_safe(sim)


# -- fencing failures --------------------------------------------------------------


def test_fence_failure_then_operator_confirm() -> None:
    sim = fleet()
    sim.hosts["h1"].fence_mode = "fail"
    sim.power_off("h1")
    sim.run(40)
    assert sim.health("h1") is Health.FENCE_FAILED
    assert len(fenced_at(sim, "h1")) == sim.cfg.fence_attempts
    assert sim.alerts("needs_operator")
    assert not sim.kinds(Recover)
    sim.operator(OperatorConfirm("h1"))
    sim.run_until(sim.all_ha_running, limit_s=5)
    assert sim.state().hosts["h1"].confirmed_by == "operator"
    assert_safe(sim)


def test_fence_timeout_is_a_failure() -> None:
    sim = fleet()
    sim.hosts["h1"].fence_mode = "hang"
    sim.isolate("h1")
    sim.run(30)
    assert "fence_failed" in transitions(sim, "h1")
    sim.run(60)
    assert sim.health("h1") is Health.FENCE_FAILED
    assert len(fenced_at(sim, "h1")) == 3
    assert not sim.kinds(Recover)
    assert sim.where("a") == ["h1"]
    assert_safe(sim)


def test_fence_executor_vanishes_deadline_counts_as_failure() -> None:
    sim = fleet()
    sim.isolate("h1")
    sim.hosts["h1"].fence_mode = "hang"
    sim.cfg = FailoverConfig(fence_timeout_s=60.0, fence_grace_s=1.0)
    sim.run(20)
    sim.scheduled.clear()  # the fence worker died: no result will ever come
    sim.run(50)
    assert "fence_failed" in transitions(sim, "h1")
    assert any("timed out" in a.message for a in sim.alerts("fence_failed"))
    assert not sim.kinds(Recover)
    assert_safe(sim)


def test_manual_agent_waits_for_operator_without_retries() -> None:
    sim = fleet()
    sim.hosts["h1"].fence_mode = "manual"
    sim.power_off("h1")
    sim.run(40)
    assert len(fenced_at(sim, "h1")) == 1
    assert sim.alerts("needs_operator")
    assert not sim.kinds(Recover)
    sim.operator(OperatorConfirm("h1"))
    sim.run_until(sim.all_ha_running, limit_s=5)
    assert_safe(sim)


def test_fence_retry_succeeds_on_second_attempt() -> None:
    sim = fleet()
    sim.hosts["h1"].fence_mode = "fail"
    sim.isolate("h1")
    sim.run_until(lambda: sim.health("h1") is Health.FENCE_FAILED)
    sim.hosts["h1"].fence_mode = "ok"
    sim.run_until(sim.recovered_from("h1"))
    assert len(fenced_at(sim, "h1")) == 2
    assert not sim.hosts["h1"].powered
    assert_safe(sim)


def test_fence_failed_host_that_comes_back_keeps_its_vms() -> None:
    sim = fleet()
    sim.hosts["h1"].fence_mode = "fail"
    sim.isolate("h1")
    sim.run(30)
    assert sim.health("h1") is Health.FENCE_FAILED
    sim.isolate("h1", cut=False)
    sim.run(2)
    assert sim.health("h1") is Health.ACTIVE
    assert sim.where("a") == ["h1"] and not sim.kinds(Recover)
    assert_safe(sim)


def test_confirm_down_refused_while_host_heartbeats() -> None:
    sim = fleet()
    sim.operator(OperatorConfirm("h1"))
    sim.run(5)
    assert sim.alerts("refused")
    assert sim.health("h1") is Health.ACTIVE and not sim.kinds(Recover)
    assert_safe(sim)


def test_operator_fence_of_live_host_then_recovery() -> None:
    sim = fleet()
    sim.operator(OperatorFence("h1"))
    sim.run_until(sim.recovered_from("h1"))
    assert not sim.hosts["h1"].powered
    assert {sim.vms[v].host for v in "abc"}.isdisjoint({"h1"})
    assert_safe(sim)


def test_late_fence_success_after_timeout_counts() -> None:
    sim = fleet()
    sim.power_off("h1")
    sim.run_until(lambda: sim.health("h1") is Health.FENCING)
    sim.scheduled.clear()
    sim.run_until(lambda: sim.health("h1") is Health.FENCE_FAILED, limit_s=40)
    sim.events.append(FenceResult("h1", True, "late confirmation"))
    sim.run_until(sim.all_ha_running, limit_s=5)
    assert_safe(sim)


# -- capacity, priorities, anti-affinity -------------------------------------------


def test_no_capacity_then_capacity_returns() -> None:
    vms = [vm("big1", "h1", vcpus=12), vm("big2", "h1", vcpus=4), vm("fill", "h2", vcpus=12)]
    sim = fleet(n=2, vms=vms)
    sim.power_off("h1")
    sim.run(15)
    assert sim.where("big2") == ["h2"]
    assert sim.where("big1") == []
    assert [a.subject for a in sim.alerts("no_capacity")] == ["big1"]
    assert sim.decisions[-1].unplaced == ("big1",)
    assert sim.health("h1") is Health.RECOVERING
    assert sim.vms["big1"].state == VMState.DOWN.value
    sim.hosts["h3"] = SimHost("h3")
    sim.run_until(sim.all_ha_running, limit_s=5)
    assert sim.where("big1") == ["h3"]
    sim.run(1)
    assert sim.health("h1") is Health.RECOVERED
    assert len(sim.alerts("no_capacity")) == 1
    assert_safe(sim)


def test_capacity_freed_by_stopping_a_vm() -> None:
    vms = [vm("a", "h1", vcpus=8), vm("x", "h2", vcpus=12, ha=False)]
    sim = fleet(n=2, vms=vms)
    sim.power_off("h1")
    sim.run(15)
    assert sim.where("a") == []
    sim.hosts["h2"].running.discard("x")
    sim.vms["x"].state = VMState.STOPPED.value
    sim.run_until(sim.all_ha_running, limit_s=5)
    assert sim.where("a") == ["h2"]
    assert_safe(sim)


def test_highest_priority_first_when_room_is_short() -> None:
    vms = [vm("low", "h1", prio=1, vcpus=5), vm("high", "h1", prio=9, vcpus=5),
           vm("mid", "h1", prio=5, vcpus=5), vm("fill", "h2", vcpus=6)]
    sim = fleet(n=2, vms=vms)
    sim.power_off("h1")
    sim.run(15)
    assert sorted(v for v in ("low", "mid", "high") if sim.where(v)) == ["high", "mid"]
    assert sim.decisions[-1].unplaced == ("low",)
    assert_safe(sim)


def test_restarts_are_issued_in_priority_order() -> None:
    vms = [vm(f"v{p}", "h1", prio=p) for p in (3, 7, 1, 9, 5)]
    sim = fleet(vms=vms)
    sim.power_off("h1")
    sim.run_until(sim.all_ha_running)
    order = [a.vm for a in sim.kinds(Recover)]  # type: ignore[attr-defined]
    assert order == ["v9", "v7", "v5", "v3", "v1"]
    assert_safe(sim)


def test_anti_affinity_spreads_group_members() -> None:
    vms = [vm("db1", "h1", group="db"), vm("db2", "h1", group="db"),
           vm("db3", "h2", group="db"), vm("x", "h1")]
    sim = fleet(n=4, vms=vms)
    sim.violations.clear()  # db1 and db2 shared h1 before the group was declared
    sim.power_off("h1")
    sim.run_until(sim.all_ha_running)
    hosts = {sim.vms[n].host for n in ("db1", "db2", "db3")}
    assert len(hosts) == 3
    assert_safe(sim)


def test_anti_affinity_unsatisfiable_is_reported() -> None:
    vms = [vm("g1", "h1", group="g"), vm("g2", "h2", group="g"), vm("g3", "h3", group="g")]
    sim = fleet(n=3, vms=vms)
    sim.power_off("h1")
    sim.run(15)
    assert sim.where("g1") == []
    assert [a.subject for a in sim.alerts("no_capacity")] == ["g1"]
    assert_safe(sim)


def test_non_ha_vms_reported_down_and_stopped_ha_left_alone() -> None:
    vms = [vm("ha", "h1"), vm("plain", "h1", ha=False),
           vm("off", "h1", state=VMState.STOPPED.value)]
    sim = fleet(vms=vms)
    sim.power_off("h1")
    sim.run_until(lambda: sim.health("h1") is Health.RECOVERED)
    downs = sim.kinds(MarkDown)
    assert [d.vm for d in downs] == ["plain"]  # type: ignore[attr-defined]
    assert sim.vms["plain"].state == VMState.DOWN.value
    assert sim.where("off") == [] and sim.vms["off"].host == "h1"
    assert sim.where("ha") != []
    assert_safe(sim)


# -- maintenance -------------------------------------------------------------------


def test_maintenance_host_is_not_failed_over() -> None:
    sim = fleet()
    sim.hosts["h1"].maintenance = True
    sim.power_off("h1")
    sim.run(30)
    assert sim.health("h1") is Health.ACTIVE
    assert not sim.kinds(Fence) and not sim.kinds(Recover)
    assert_safe(sim)


def test_maintenance_hosts_receive_no_restarts() -> None:
    sim = fleet(n=3)
    sim.hosts["h2"].maintenance = True
    sim.power_off("h1")
    sim.run_until(sim.all_ha_running)
    assert {sim.vms[v].host for v in "abc"} == {"h3"}
    assert_safe(sim)


# -- several hosts, storms ---------------------------------------------------------


def test_two_hosts_fail_together_priorities_across_hosts() -> None:
    vms = [vm("a", "h1", prio=1), vm("b", "h2", prio=9), vm("c", "h1", prio=5),
           vm("d", "h2", prio=3)]
    sim = fleet(n=5, vms=vms)
    sim.power_off("h1")
    sim.power_off("h2")
    sim.run_until(sim.all_ha_running)
    order = [a.vm for a in sim.kinds(Recover)]  # type: ignore[attr-defined]
    assert order == ["b", "c", "d", "a"]
    assert sim.health("h1") is Health.RECOVERED and sim.health("h2") is Health.RECOVERED
    assert_safe(sim)


def test_two_hosts_fail_one_after_another() -> None:
    sim = fleet(n=4, vms=[vm("a", "h1"), vm("b", "h2")])
    sim.power_off("h1")
    sim.run_until(sim.all_ha_running)
    sim.power_off(sim.vms["a"].host)
    sim.run_until(sim.all_ha_running)
    assert len(sim.kinds(Fence)) == 2
    assert_safe(sim)


def test_storm_fences_nobody_and_alerts() -> None:
    sim = fleet(n=4)
    for h in ("h1", "h2", "h3"):
        sim.isolate(h)
    sim.run(30)
    assert not sim.kinds(Fence) and not sim.kinds(Recover)
    assert len(sim.alerts("storm")) == 1
    for h in ("h1", "h2", "h3"):
        sim.isolate(h, cut=False)
    sim.run(3)
    assert sim.alerts("storm_over")
    assert all(sim.health(h) is Health.ACTIVE for h in sim.hosts)
    assert_safe(sim)


def test_exactly_half_is_not_a_storm() -> None:
    sim = fleet(n=4, vms=[vm("a", "h1"), vm("b", "h2")])
    sim.power_off("h1")
    sim.power_off("h2")
    sim.run_until(sim.all_ha_running)
    assert not sim.alerts("storm")
    assert_safe(sim)


def test_monitor_cut_off_from_everyone_is_a_storm() -> None:
    sim = fleet(n=5)
    for h in sim.hosts:
        sim.isolate(h)
    sim.run(20)
    assert sim.alerts("storm") and not sim.kinds(Fence)
    assert_safe(sim)


def test_storm_operator_confirm_restarts_only_that_host() -> None:
    sim = fleet(n=5, vms=[vm("a", "h1"), vm("b", "h2"), vm("c", "h3")])
    for h in ("h1", "h2", "h3"):
        sim.power_off(h)
    sim.run(10)
    assert sim.alerts("storm") and not sim.kinds(Fence)
    sim.operator(OperatorConfirm("h1"))
    sim.run(20)
    assert sim.where("a") != [] and sim.where("b") == [] and sim.where("c") == []
    assert sim.state().held == {"h2", "h3"} and not sim.kinds(Fence)
    assert not sim.alerts("storm_over")
    for h in ("h2", "h3"):
        sim.operator(OperatorConfirm(h))
    sim.run_until(sim.all_ha_running, limit_s=5)
    sim.run(1)
    assert sim.alerts("storm_over")
    assert_safe(sim)


def test_host_vanishing_during_storm_is_held_too() -> None:
    sim = fleet(n=4, vms=[vm("a", "h4")])
    for h in ("h1", "h2", "h3"):
        sim.isolate(h)
    sim.run(10)
    sim.isolate("h1", cut=False)
    sim.isolate("h2", cut=False)
    sim.run(2)
    assert sim.state().held == {"h3"}
    sim.power_off("h4")
    sim.run(20)
    assert sim.state().held == {"h3", "h4"}
    assert not sim.kinds(Fence) and not sim.kinds(Recover)
    assert_safe(sim)


def test_storm_operator_fences_one_host_by_hand() -> None:
    sim = fleet(n=3, vms=[vm("a", "h1"), vm("b", "h2")])
    sim.isolate("h1")
    sim.isolate("h2")
    sim.hosts["h3"].vcpus = 64
    sim.run(10)
    assert sim.alerts("storm") and not sim.kinds(Fence)
    sim.operator(OperatorFence("h1"))
    sim.run(5)
    assert sim.where("a") == ["h3"] and sim.where("b") == ["h2"]
    assert sim.health("h2") is Health.DOWN
    assert_safe(sim)


# -- monitors ----------------------------------------------------------------------


def _two_monitors(**kwargs: Any) -> Simulation:
    return fleet(monitors=[SimMonitor("m1"), SimMonitor("m2")], **kwargs)


@pytest.mark.parametrize("crash,keep", [("mid_actions", 1), ("after_persist", 0),
                                        ("before_persist", 0)])
def test_leader_dies_mid_failover_no_double_restart(crash: str, keep: int) -> None:
    sim = _two_monitors()
    sim.power_off("h1")
    sim.monitors[0].crash, sim.monitors[0].keep_actions = crash, keep
    sim.monitors[0].crash_on = "Recover"
    sim.run_until(sim.all_ha_running, limit_s=30)
    assert not sim.monitors[0].alive
    assert sim.lease is not None and sim.lease.holder == "m2" and sim.lease.epoch == 2
    restarted = [v for _, v, _ in sim.starts]
    assert sorted(restarted) == ["a", "b", "c"]
    assert_safe(sim)


def test_leader_dies_before_fence_is_sent_new_leader_fences() -> None:
    sim = _two_monitors()
    sim.isolate("h1")
    sim.monitors[0].crash, sim.monitors[0].crash_on = "after_persist", "Fence"
    sim.run_until(lambda: not sim.monitors[0].alive)
    assert sim.health("h1") is Health.FENCING and sim.hosts["h1"].powered
    sim.run_until(sim.recovered_from("h1"), limit_s=20)
    assert [m for _, m, a in sim.actions if isinstance(a, Fence)] == ["m2"]
    assert_safe(sim)


def test_standby_monitor_never_acts_while_leader_lives() -> None:
    sim = _two_monitors()
    sim.power_off("h1")
    sim.run_until(sim.all_ha_running)
    assert {m for _, m, _ in sim.actions} == {"m1"}
    assert_safe(sim)


def test_state_lost_new_monitor_rebuilds_safely() -> None:
    sim = fleet()
    sim.power_off("h1")
    sim.run_until(lambda: bool(sim.kinds(Recover)))
    sim.stored_state = {}
    sim.run_until(sim.all_ha_running)
    assert sorted(v for _, v, _ in sim.starts) == ["a", "b", "c"]
    assert_safe(sim)


def test_duplicate_restart_delivery_is_suppressed() -> None:
    sim = fleet(duplicate_recovers=True)
    sim.power_off("h1")
    sim.run_until(sim.all_ha_running)
    sim.run(3)
    assert len(sim.skipped) == 3
    assert len(sim.starts) == 3
    assert_safe(sim)


def test_target_dies_during_restart_vm_replanned() -> None:
    sim = fleet(n=4, vms=[vm("a", "h1")])
    sim.power_off("h1")
    sim.run_until(lambda: bool(sim.kinds(Recover)))
    first = sim.kinds(Recover)[0].target  # type: ignore[attr-defined]
    sim.power_off(first)
    sim.run_until(sim.all_ha_running, limit_s=30)
    assert sim.vms["a"].host not in (first, "h1")
    assert sim.alerts("restart_failed")
    assert_safe(sim)


def test_fenced_host_returns_and_is_activated_by_operator() -> None:
    sim = fleet(n=2, vms=[vm("a", "h1")])
    sim.power_off("h1")
    sim.run_until(sim.all_ha_running)
    sim.run(1)
    sim.power_on("h1")
    sim.run(3)
    assert sim.health("h1") is Health.RECOVERED
    assert len(sim.alerts("host_returned")) == 1
    sim.operator(OperatorActivate("h1"))
    sim.run(2)
    assert sim.health("h1") is Health.ACTIVE
    sim.power_off("h2")
    sim.run_until(sim.all_ha_running)
    assert sim.where("a") == ["h1"]
    assert_safe(sim)


def test_new_monitor_waits_for_heartbeats_of_unknown_hosts() -> None:
    sim = Simulation.build([SimHost("h1"), SimHost("h2"), SimHost("h3")], [vm("a", "h1")])
    sim.last_beat.clear()
    sim.power_off("h1")
    sim.run(4.5)
    assert not sim.kinds(Fence)
    sim.run_until(sim.all_ha_running)
    assert_safe(sim)


