"""A migration that fails late is settled by where the VM is, never by the error.

The sim hypervisor reproduces what libvirt does at the end of a peer-to-peer migration
(see ``workers.hypervisors.sim``): errors after the switch-over, errors in between, and
the source copy resumed beside the destination's.
"""

from __future__ import annotations

import time

import pytest

from fleet.core.hypervisor import DomainSpec, DomainState
from fleet.core.models import JobKind, Move
from fleet.settings import Settings
from fleet.store import Store
from workers.hypervisors.sim import SimHypervisor
from workers.jobs import JobService
from workers.recovery import move_record
from workers.runner import MigrationRunner

SETTINGS = Settings(poll_interval_s=0.05, move_lease_s=5, stall_timeout_s=5,
                    migrate_retries=2, move_settle_s=2)


def sim(store: Store, host: str) -> SimHypervisor:
    return SimHypervisor(store.r, store.keys, host, speed=50.0, bandwidth_mib_s=1000,
                         switch_gap_s=0.05)


def submit(store: Store) -> Move:
    job = store.create_move_job(JobKind.MIGRATE, "test", [Move("", "", "vm1", "h1",
                                                               target="h2")])
    sent: list[Move] = []
    JobService(store, sent.append).start(job.id)
    return sent[0]


def run(store: Store, move: Move) -> tuple[str, str]:
    runner = MigrationRunner(store, sim(store, "h1"), SETTINGS, lambda h: sim(store, h.name),
                             "h1/test", sleep=lambda s: time.sleep(min(s, 0.05)))
    outcome = runner.run(move.id)
    return outcome.state, outcome.detail


def copies(store: Store) -> dict[str, DomainState]:
    found = {}
    for host in ("h1", "h2", "h3"):
        for dom in sim(store, host).list_domains():
            if dom.name == "vm1":
                found[host] = dom.state
    return found


def kinds(store: Store, job_id: str) -> list[str]:
    return [e["kind"] for _, e in store.events(job_id)]


@pytest.mark.parametrize("fault", ["error_after_switchover", "error_in_gap"])
def test_an_error_after_the_switch_over_ends_in_success(fleet3: Store, fault: str) -> None:
    sim(fleet3, "h1").inject(fault)
    move = submit(fleet3)
    state, detail = run(fleet3, move)
    assert state == "succeeded", detail
    assert copies(fleet3) == {"h2": DomainState.RUNNING}
    vm = fleet3.get_vm("vm1")
    assert (vm.host, vm.state) == ("h2", "running")
    assert fleet3.owning_job("vm1") is None


def test_two_running_copies_the_source_is_paused_then_removed(fleet3: Store) -> None:
    sim(fleet3, "h1").inject("both_running")
    move = submit(fleet3)
    state, detail = run(fleet3, move)
    assert state == "succeeded", detail
    assert copies(fleet3) == {"h2": DomainState.RUNNING}
    assert fleet3.get_vm("vm1").host == "h2"
    steps = [k for k in kinds(fleet3, move.job_id) if k.startswith("vm.copy_")]
    assert steps == ["vm.copy_pause", "vm.copy_remove"]


def test_a_failure_before_the_switch_over_re_plans_and_leaves_nothing_behind(
        fleet3: Store) -> None:
    sim(fleet3, "h1").inject("fail_before_switchover")
    move = submit(fleet3)
    state, detail = run(fleet3, move)
    assert state == "pending" and "re-plan" in detail, detail
    assert copies(fleet3) == {"h1": DomainState.RUNNING}
    assert fleet3.get_move(move.id).excluded == ["h2"]
    assert fleet3.get_vm("vm1").host == "h1"


def test_a_stale_move_of_a_vm_failover_moved_elsewhere_changes_nothing(fleet3: Store) -> None:
    """Case 2: a move dispatched before its source died is consumed after failover
    restarted the VM elsewhere: the runner must not bring the record back."""
    move = submit(fleet3)
    h1, h3 = sim(fleet3, "h1"), sim(fleet3, "h3")
    assert move_record(fleet3, "vm1", "h1", "h3") is not None  # failover's restart
    h3.start(DomainSpec.of(fleet3.get_vm("vm1")))
    h1.shutdown("vm1", 0)  # h1 lost power; its definition comes back shut off
    state, detail = run(fleet3, move)
    assert state == "failed" and "recorded on h3" in detail, detail
    vm = fleet3.get_vm("vm1")
    assert (vm.host, vm.state) == ("h3", "running")
    assert fleet3.owning_job("vm1") is None
