"""A VM's power on its host (``workers.vmpower``) on the sim adapter: intent first, only
on the recorded host, never while a move holds the VM; a stopped VM moves by its
definition (the runner's cold path, and the reconciler's), and a failed move leaves the
recorded state as it was."""

from __future__ import annotations

import time

from fleet.core.hypervisor import DomainSpec, DomainState, PermanentError
from fleet.core.models import JobKind, Move
from fleet.core.vmguard import GuardConfig, GuardView, guard
from fleet.store import Store
from tests.unit.test_runner import FAST, runner, submit
from workers.hypervisors.sim import SimHypervisor
from workers.reconciler import Reconciler
from workers.vmpower import start_vm, stop_vm


def hv(store: Store, host: str = "h1") -> SimHypervisor:
    return SimHypervisor(store.r, store.keys, host)


def test_stop_records_the_intent_and_keeps_the_definition(fleet3: Store) -> None:
    fleet3.update_vm("vm1", ha=True)
    result = stop_vm(fleet3, hv(fleet3), "vm1", timeout_s=0)
    assert result.ok and result.acted, result.detail
    assert fleet3.get_vm("vm1").state == "stopped"
    assert hv(fleet3).lookup("vm1").state is DomainState.SHUTOFF
    # the guard leaves an HA VM its operator stopped alone
    view = GuardView(fleet3.list_vms(), {"h1": "active"}, {"h1": 0.1},
                     {"h1": {"vm1": "shutoff"}})
    assert guard(view, {}, GuardConfig(grace_s=0), 100.0).actions == []
    again = stop_vm(fleet3, hv(fleet3), "vm1", timeout_s=0)
    assert again.ok  # stopping a stopped VM is harmless


def test_start_boots_it_on_its_host_and_records_running(fleet3: Store) -> None:
    stop_vm(fleet3, hv(fleet3), "vm1", timeout_s=0)
    result = start_vm(fleet3, hv(fleet3), "vm1")
    assert result.ok and result.acted, result.detail
    assert hv(fleet3).lookup("vm1").state is DomainState.RUNNING
    assert fleet3.get_vm("vm1").state == "running"
    assert start_vm(fleet3, hv(fleet3), "vm1").detail == "running on h1 (already)"


def test_power_is_refused_elsewhere_while_moving_and_when_down(fleet3: Store) -> None:
    assert stop_vm(fleet3, hv(fleet3, "h2"), "vm1", 0).detail == "refused: recorded on h1 now"
    assert stop_vm(fleet3, hv(fleet3), "ghost", 0).detail == "refused: no such VM any more"
    fleet3.create_move_job(JobKind.MIGRATE, "test", [Move("", "", "vm1", "h1", "h2")])
    assert stop_vm(fleet3, hv(fleet3), "vm1", 0).detail == "refused: a job is moving it"
    assert hv(fleet3).lookup("vm1").state is DomainState.RUNNING
    assert fleet3.get_vm("vm1").state == "running"
    fleet3.r.delete(fleet3.keys.vm_lock("vm1"))
    fleet3.update_vm("vm1", state="down")
    assert start_vm(fleet3, hv(fleet3), "vm1").detail == "refused: recorded down"


def test_a_stopped_vm_moves_by_its_definition(fleet3: Store) -> None:
    stop_vm(fleet3, hv(fleet3), "vm1", timeout_s=0)
    move = submit(fleet3, to="h2")
    run, samples = runner(fleet3)
    outcome = run.run(move.id)
    assert outcome.state == "succeeded", outcome.detail
    assert outcome.detail == "vm1 is stopped on h2"
    assert hv(fleet3, "h2").lookup("vm1").state is DomainState.SHUTOFF  # defined, not started
    assert [d.name for d in hv(fleet3).list_domains()] == []
    vm = fleet3.get_vm("vm1")
    assert (vm.host, vm.state) == ("h2", "stopped")
    assert samples[-1].percent == 100.0 and fleet3.claimed("h2") == (0, 0)
    assert start_vm(fleet3, hv(fleet3, "h2"), "vm1").ok  # and it boots there


def test_a_failed_move_keeps_the_recorded_state(fleet3: Store) -> None:
    hv(fleet3).shutdown("vm1", 0)
    fleet3.update_vm("vm1", state="down")  # shut off, and not recorded stopped: no cold move
    move = submit(fleet3, to="h2")
    run, _ = runner(fleet3)
    outcome = run.run(move.id)
    assert outcome.state == "failed" and "recorded down" in outcome.detail
    vm = fleet3.get_vm("vm1")
    assert (vm.host, vm.state) == ("h1", "down")
    assert [d.name for d in hv(fleet3, "h2").list_domains()] == []


def test_the_reconciler_settles_a_stopped_vm_by_its_definitions(fleet3: Store) -> None:
    """The runner died between defining the VM on h2 and undefining it on h1: the copy on
    h2 goes, the VM stays stopped on h1. Had it died after, the move commits to h2."""
    stop_vm(fleet3, hv(fleet3), "vm1", timeout_s=0)
    for both in (True, False):
        move = submit(fleet3, to="h2")
        assert fleet3.claim_move(move.id, "h1/dead", lease_s=0.001) is not None
        time.sleep(0.01)
        hv(fleet3, "h2").define(DomainSpec.of(fleet3.get_vm("vm1")))
        if not both:
            hv(fleet3).destroy("vm1")
        rec = Reconciler(fleet3, {"h1": hv(fleet3)}, lambda h: hv(fleet3, h.name), FAST,
                         "h1/new")
        (outcome,) = rec.sweep()
        vm = fleet3.get_vm("vm1")
        if both:
            assert outcome.state == "failed" and "is still stopped on h1" in outcome.detail
            assert (vm.host, vm.state) == ("h1", "stopped")
            assert [d.name for d in hv(fleet3, "h2").list_domains()] == []
        else:
            assert outcome.state == "succeeded"
            assert (vm.host, vm.state) == ("h2", "stopped")


class Watching(SimHypervisor):
    """A sim host that notes the VM's record while it shuts the guest down, or fails."""

    def __init__(self, store: Store, fail: bool = False) -> None:
        super().__init__(store.r, store.keys, "h1")
        self.store, self.fail, self.seen = store, fail, ""

    def shutdown(self, name: str, timeout_s: float) -> None:
        self.seen = self.store.get_vm(name).state
        if self.fail:
            raise PermanentError("the guest hangs and destroy failed")
        super().shutdown(name, timeout_s)


def test_the_record_says_stopping_during_the_shutdown(fleet3: Store) -> None:
    watching = Watching(fleet3)
    assert stop_vm(fleet3, watching, "vm1", timeout_s=5).ok
    assert watching.seen == "stopping"  # the guard does not judge a stopping VM
    assert fleet3.get_vm("vm1").state == "stopped"


def test_a_failed_shutdown_leaves_it_recorded_running(fleet3: Store) -> None:
    result = stop_vm(fleet3, Watching(fleet3, fail=True), "vm1", timeout_s=5)
    assert not result.ok and "shutdown failed" in result.detail
    assert fleet3.get_vm("vm1").state == "running"
    assert hv(fleet3).lookup("vm1").state is DomainState.RUNNING
