"""What a dead host left half-done: adopting a VM found running, settling its moves."""

from __future__ import annotations

import time

from fleet.core.hypervisor import MigrationParams, MigrationTarget
from fleet.core.models import JobKind, Move
from fleet.store import Store
from workers.adoption import adopt, running_elsewhere, settle_orphans
from workers.hypervisors.sim import SimHypervisor
from workers.jobs import JobService


def _orphan(store: Store) -> Move:
    """vm1's move h1 -> h2, claimed by a runner that died (its lease lapsed)."""
    job = store.create_move_job(JobKind.MIGRATE, "test", [Move("", "", "vm1", "h1", target="h2")])
    sent: list[Move] = []
    JobService(store, sent.append).start(job.id)
    claimed = store.claim_move(sent[0].id, "h1/dead", lease_s=0.001)
    assert claimed is not None
    moving = store.advance_move(claimed.id, claimed.token, "migrating", lease_s=0.001)
    assert moving is not None
    time.sleep(0.01)
    return moving


def test_running_elsewhere_ignores_the_source_and_other_states() -> None:
    reports = {"h1": {"vm1": "running"}, "h2": {"vm1": "paused"}, "h3": {"vm2": "running"}}
    assert running_elsewhere(reports, "vm1", "h1") is None
    assert running_elsewhere({**reports, "h3": {"vm1": "running"}}, "vm1", "h1") == "h3"


def test_adopt_moves_the_record_only_from_the_dead_source(fleet3: Store) -> None:
    assert not adopt(fleet3, "vm1", "h2", "h3")  # recorded on h1, not h2: nothing
    assert fleet3.get_vm("vm1").host == "h1"
    assert adopt(fleet3, "vm1", "h1", "h2")
    assert (fleet3.get_vm("vm1").host, fleet3.get_vm("vm1").state) == ("h2", "running")


def test_an_orphaned_move_that_switched_over_succeeds(fleet3: Store) -> None:
    move = _orphan(fleet3)
    SimHypervisor(fleet3.r, fleet3.keys, "h1", speed=50.0).migrate(
        "vm1", MigrationTarget("h2"), MigrationParams())
    (outcome,) = settle_orphans(fleet3, ["h1"], {"h2": {"vm1": "running"}}, "monitor:m", 5)
    assert outcome.state == "succeeded"
    assert fleet3.get_move(move.id).state == "succeeded"
    assert fleet3.get_vm("vm1").host == "h2"
    assert fleet3.claimed("h2") == (0, 0)
    assert fleet3.owning_job("vm1") is None


def test_an_orphaned_move_that_did_not_switch_over_fails_and_leaves_the_record(
        fleet3: Store) -> None:
    move = _orphan(fleet3)
    fleet3.update_vm("vm1", host="h3")  # failover already restarted it on h3
    (outcome,) = settle_orphans(fleet3, ["h1"], {"h2": {}}, "monitor:m", 5)
    assert outcome.state == "failed" and "not reported on h2" in outcome.detail
    assert fleet3.get_move(move.id).state == "failed"
    assert fleet3.get_vm("vm1").host == "h3"  # failover owns the record: untouched
    assert fleet3.claimed("h2") == (0, 0)


def test_moves_of_live_sources_are_left_alone_and_a_dead_sources_lease_is_moot(
        fleet3: Store) -> None:
    move = _orphan(fleet3)
    assert settle_orphans(fleet3, ["h3"], {}, "monitor:m", 5) == []  # h1 is not dead
    assert fleet3.get_move(move.id).state == "migrating"
    assert fleet3.take_over(move.id, "h1/reconciler", lease_s=30) is not None
    (outcome,) = settle_orphans(fleet3, ["h1"], {"h2": {}}, "monitor:m", 5)  # holder off
    assert outcome.state == "failed" and fleet3.owning_job("vm1") is None


def test_a_move_that_never_started_migrating_fails_even_if_the_vm_runs_there(
        fleet3: Store) -> None:
    job = fleet3.create_move_job(JobKind.MIGRATE, "t", [Move("", "", "vm1", "h1", target="h2")])
    sent: list[Move] = []
    JobService(fleet3, sent.append).start(job.id)
    assert fleet3.claim_move(sent[0].id, "h1/dead", lease_s=0.001) is not None
    time.sleep(0.01)
    (outcome,) = settle_orphans(fleet3, ["h1"], {"h2": {"vm1": "running"}}, "monitor:m", 5)
    assert outcome.state == "failed"
