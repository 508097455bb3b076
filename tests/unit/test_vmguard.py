"""The VM guard (pure core) and its hands on a host (``workers.vmpower``, sim adapter)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.core.errors import InvalidInput
from fleet.core.failover_model import Alert
from fleet.core.models import VM, JobKind, Move
from fleet.core.vmguard import (
    GuardAction,
    GuardConfig,
    GuardView,
    RecordState,
    StartInPlace,
    Watch,
    guard,
)
from fleet.store import Store
from workers.hypervisors.sim import SimHypervisor
from workers.vmpower import start_in_place

CFG = GuardConfig(grace_s=2.0, max_restarts=2, window_s=100.0, start_timeout_s=10.0,
                  fresh_s=3.0)


def vm(name: str = "v", host: str = "h1", ha: bool = True, state: str = "running") -> VM:
    return VM(name, f"u-{name}", host, 1, 256, state=state, ha=ha)


def view(vms: list[VM], reported: str | None = "crashed", host_state: str = "active",
         age: float = 0.5, moving: frozenset[str] = frozenset()) -> GuardView:
    reports = {"h1": {} if reported is None else {v.name: reported for v in vms}}
    return GuardView(vms, {"h1": host_state, "h2": "active"}, {"h1": age}, reports, moving)


def run(vms: list[VM], times: list[float], **kw: object) -> tuple[list[GuardAction],
                                                                   dict[str, Watch]]:
    """The guard's rounds at ``times`` on the same view; every action and the last watches."""
    watches: dict[str, Watch] = {}
    actions: list[GuardAction] = []
    for now in times:
        decision = guard(view(vms, **kw), watches, CFG, now)  # type: ignore[arg-type]
        watches = decision.watches
        actions += decision.actions
    return actions, watches


def test_a_crashed_ha_vm_is_started_after_the_grace_only() -> None:
    actions, _ = run([vm()], [10.0, 11.0, 11.9])
    assert actions == []
    actions, watches = run([vm()], [10.0, 12.0])
    assert actions == [StartInPlace("v", "h1", 1)]
    assert watches["v"].pending_until == 22.0


def test_one_start_at_a_time_then_again_after_the_start_timeout() -> None:
    actions, _ = run([vm()], [10.0, 12.0, 13.0, 20.0, 21.9])
    assert actions == [StartInPlace("v", "h1", 1)]
    actions, _ = run([vm()], [10.0, 12.0, 22.0])
    assert actions == [StartInPlace("v", "h1", 1), StartInPlace("v", "h1", 2)]


def test_running_again_clears_the_watch_but_counts_the_start() -> None:
    first = guard(view([vm()]), {}, CFG, 10.0)
    second = guard(view([vm()]), first.watches, CFG, 12.0)
    ran = guard(view([vm()], reported="running"), second.watches, CFG, 13.0)
    assert ran.actions == [] and ran.watches["v"] == Watch(starts=(12.0,))
    later = guard(view([vm()], reported="running"), ran.watches, CFG, 200.0)
    assert "v" not in later.watches  # the start left the window: nothing to remember


def test_past_the_limit_it_is_recorded_stopped_with_one_alert() -> None:
    actions, watches = run([vm()], [0.0, 2.0, 12.0, 22.0, 23.0, 40.0])
    starts = [a for a in actions if isinstance(a, StartInPlace)]
    assert [a.attempt for a in starts] == [1, 2]
    assert RecordState("v", "h1", "stopped", "stopped 3 times within 100 s; not started"
                       " again") in actions
    assert [a.kind for a in actions if isinstance(a, Alert)] == ["vm_restart_limit"]
    assert watches["v"].gave_up


def test_an_operator_start_after_giving_up_resets_the_count() -> None:
    _, watches = run([vm()], [0.0, 2.0, 12.0, 22.0])
    assert watches["v"].gave_up
    stopped = vm(state="stopped")
    seen = guard(view([stopped], reported="running"), watches, CFG, 30.0)
    assert seen.actions == []  # a report may predate the stop: not before the grace
    back = guard(view([stopped], reported="running"), seen.watches, CFG, 32.0)
    assert back.actions == [RecordState("v", "h1", "running", "its host reports it running")]
    assert "v" not in back.watches


def test_the_window_forgets_old_starts() -> None:
    watches = {"v": Watch(starts=(0.0, 5.0))}
    decision = guard(view([vm()]), watches, CFG, 101.0)
    decision = guard(view([vm()]), decision.watches, CFG, 103.0)
    assert decision.actions == [StartInPlace("v", "h1", 2)]  # the start at 0.0 aged out


def test_a_non_ha_vm_is_recorded_stopped_and_running_again() -> None:
    actions, _ = run([vm(ha=False)], [0.0, 2.0, 3.0])
    assert actions == [RecordState("v", "h1", "stopped", "h1 reports it crashed")]
    stopped = vm(ha=False, state="stopped")
    actions, _ = run([stopped], [5.0, 6.0, 7.0], reported="running")
    assert [a.state for a in actions if isinstance(a, RecordState)] == ["running"]
    flicker = guard(view([stopped], reported="running"), {}, CFG, 5.0)
    after = guard(view([stopped], reported="shutoff"), flicker.watches, CFG, 6.0)
    later = guard(view([stopped], reported="running"), after.watches, CFG, 7.5)
    assert flicker.actions == after.actions == later.actions == []  # not in a row


def test_a_vm_being_stopped_is_not_judged() -> None:
    for reported in ("running", "shutoff"):
        actions, _ = run([vm(state="stopping")], [0.0, 5.0, 10.0], reported=reported)
        assert actions == []


@pytest.mark.parametrize("kw", [
    {"host_state": "suspect"}, {"host_state": "down"}, {"host_state": "fenced"},
    {"age": 3.0}, {"moving": frozenset({"v"})}, {"reported": None}, {"reported": "paused"},
])
def test_not_judged(kw: dict[str, object]) -> None:
    actions, watches = run([vm()], [0.0, 5.0, 10.0], **kw)
    assert actions == []
    assert all(w.down_since is None for w in watches.values())


def test_a_maintenance_host_is_guarded_and_a_down_vm_is_not() -> None:
    actions, _ = run([vm()], [0.0, 2.0], host_state="maintenance")
    assert actions == [StartInPlace("v", "h1", 1)]
    actions, _ = run([vm(state="down")], [0.0, 2.0])
    assert actions == []


def test_an_unjudged_round_restarts_the_grace() -> None:
    first = guard(view([vm()]), {}, CFG, 0.0)
    gap = guard(view([vm()], age=5.0), first.watches, CFG, 1.0)
    again = guard(view([vm()]), gap.watches, CFG, 2.5)
    assert again.actions == []  # first seen stopped again at 2.5: grace runs from there


def test_disabled_and_bad_config() -> None:
    assert guard(view([vm()]), {}, replace(CFG, enabled=False), 10.0).actions == []
    with pytest.raises(InvalidInput):
        GuardConfig(window_s=0)
    with pytest.raises(InvalidInput):
        GuardConfig(max_restarts=-1)
    cfg = GuardConfig.from_mapping({"vmguard_grace_s": 4.0, "vmguard_enabled": False,
                                    "failover_grace_s": 9.0}, fresh_s=7.0)
    assert (cfg.grace_s, cfg.enabled, cfg.fresh_s) == (4.0, False, 7.0)


def test_watch_round_trip() -> None:
    watch = Watch(1.0, 1.5, (2.0, 3.0), 4.0, True)
    assert Watch.from_dict(watch.to_dict()) == watch


REPORTS = st.sampled_from(["running", "crashed", "shutoff", "paused", None])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(REPORTS, st.booleans(), st.floats(0.1, 20.0)), max_size=40),
       st.booleans())
def test_never_too_many_starts_and_never_unjudged(
        rounds: list[tuple[str | None, bool, float]], ha: bool) -> None:
    """Whatever the reports: starts only for judged HA VMs, at most max_restarts per
    window, never two within start_timeout_s."""
    watches: dict[str, Watch] = {}
    now, starts, record, ran = 0.0, [], vm(ha=ha), False
    for reported, fresh, step in rounds:
        now += step
        decision = guard(view([record], reported=reported, age=0.5 if fresh else 9.0),
                         watches, CFG, now)
        watches = decision.watches
        for action in decision.actions:
            if isinstance(action, StartInPlace):
                assert ha and fresh and reported in ("crashed", "shutoff")
                assert not starts or ran or now - starts[-1] >= CFG.start_timeout_s
                starts.append(now)
                ran = False
            elif isinstance(action, RecordState):
                record = replace(record, state=action.state)
        ran = ran or (fresh and reported == "running")
    for t in starts:
        assert sum(1 for u in starts if t <= u < t + CFG.window_s) <= CFG.max_restarts


def test_start_in_place_on_a_sim_host(store: Store) -> None:
    hv = SimHypervisor(store.r, store.keys, "h1")
    from fleet.core.models import Host
    from workers.inventory import create_vm

    store.put_host(Host("h1", 8, 8192))
    store.put_host(Host("h2", 8, 8192))
    create_vm(store, hv, VM("a", "u-a", "h1", 1, 256, ha=True))
    assert start_in_place(store, hv, "a", 1).detail == "running on h1 (already)"
    hv.crash("a")
    assert hv.lookup("a").state.value == "crashed"
    result = start_in_place(store, hv, "a", 1)
    assert result.ok and hv.lookup("a").state.value == "running"
    hv.crash("a")
    store.update_vm("a", host="h2")
    assert start_in_place(store, hv, "a", 2).detail == "skipped: recorded on h2 now"
    store.update_vm("a", host="h1", state="stopped")
    assert start_in_place(store, hv, "a", 2).detail == "skipped: recorded stopped"
    store.update_vm("a", state="running")
    store.create_move_job(JobKind.MIGRATE, "test", [Move("", "", "a", "h1", "h2")])
    assert start_in_place(store, hv, "a", 2).detail == "skipped: a job is moving it"
    assert hv.lookup("a").state.value == "crashed"  # nothing was started
    store.r.delete(store.keys.vm_lock("a"))
    hv.destroy("a")
    assert start_in_place(store, hv, "a", 2).detail == "skipped: not defined on h1"
