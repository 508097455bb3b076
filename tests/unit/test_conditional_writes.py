"""Writes that depend on a read are conditional on it: stale controllers change nothing,
lost messages and orphaned locks are swept, drains see VMs still on their way."""

from __future__ import annotations

import time

import pytest

from fleet.core.errors import Conflict
from fleet.core.models import JobKind, Move, MoveState
from fleet.core.planmodel import PlacementConfig
from fleet.store import Store
from workers.drain import DrainPlanner, create_drain, start_maintenance
from workers.jobs import JobService
from workers.outcomes import commit


def dispatched(store: Store) -> tuple[JobService, Move, list[Move]]:
    sent: list[Move] = []
    svc = JobService(store, sent.append)
    job = store.create_move_job(JobKind.MIGRATE, "test", [Move("", "", "vm1", "h1",
                                                               target="h2")])
    svc.start(job.id)
    return svc, sent[0], sent


def test_a_redelivery_decided_before_a_claim_does_not_undo_it(fleet3: Store) -> None:
    svc, move, sent = dispatched(fleet3)
    claimed = fleet3.claim_move(move.id, "h1/runner", lease_s=30)
    assert claimed is not None
    svc.redeliver(move.job_id, older_than_s=-1)  # read "pending", written after the claim
    now = fleet3.get_move(move.id)
    assert (now.state, now.token) == ("claimed", claimed.token)
    assert len(sent) == 1  # not dispatched a second time
    assert fleet3.claims_of("h2")  # capacity still reserved


def test_a_cancel_decided_on_a_stale_read_leaves_a_claimed_move_alone(fleet3: Store) -> None:
    svc, move, _ = dispatched(fleet3)
    claimed = fleet3.claim_move(move.id, "h1/runner", lease_s=30)
    assert claimed is not None
    svc._drop(move, MoveState.CANCELLED.value, "cancelled before it began")  # stale `move`
    assert fleet3.get_move(move.id).state == "claimed"
    assert fleet3.lock_owner("vm1") == move.id
    assert fleet3.claims_of("h2")


def test_a_job_whose_start_message_was_lost_is_started_by_the_sweep(fleet3: Store) -> None:
    sent: list[Move] = []
    svc = JobService(fleet3, sent.append)
    job = fleet3.create_move_job(JobKind.MIGRATE, "test", [Move("", "", "vm1", "h1",
                                                                target="h2")])
    svc.sweep(redeliver_after_s=60, pending_after_s=60)
    assert fleet3.get_job(job.id).state == "pending" and not sent  # too young yet
    svc.sweep(redeliver_after_s=60, pending_after_s=0)
    assert fleet3.get_job(job.id).state == "running" and len(sent) == 1


def test_a_pending_job_can_be_cancelled_and_frees_its_vm(fleet3: Store) -> None:
    svc = JobService(fleet3, lambda m: None)
    job = fleet3.create_move_job(JobKind.MIGRATE, "test", [Move("", "", "vm1", "h1")])
    assert svc.cancel(job.id, "op").state == "cancelled"
    assert fleet3.lock_owner("vm1") is None
    assert [m.state for m in fleet3.job_moves(fleet3.get_job(job.id))] == ["cancelled"]


def test_orphaned_locks_are_freed_and_live_ones_kept(fleet3: Store) -> None:
    _, move, _ = dispatched(fleet3)
    fleet3.r.set(fleet3.keys.vm_lock("ghost"), "no-such-move")
    fleet3.r.sadd(fleet3.keys.vm_locks, "ghost")
    assert fleet3.lock_vm("vm9", "restart/h1/h2", ttl_s=30)
    assert fleet3.sweep_locks() == ["ghost"]
    assert fleet3.lock_owner("vm1") == move.id and fleet3.lock_owner("vm9")
    fleet3.r.delete(fleet3.keys.job(move.job_id))  # the job vanished: its locks are orphans
    assert fleet3.sweep_locks() == ["vm1"]


def test_a_job_is_created_whole_or_not_at_all(fleet3: Store) -> None:
    fleet3.lock_vm("vm2", "restart/h1/h3", ttl_s=30)
    before = set(fleet3.r.keys("*"))
    with pytest.raises(Conflict, match="vm2"):
        fleet3.create_move_job(JobKind.DRAIN, "test", [Move("", "", "vm1", "h1"),
                                                       Move("", "", "vm2", "h1")])
    assert fleet3.lock_owner("vm1") is None
    assert {k for k in fleet3.r.keys("*") if ":move:" in k or ":job:" in k} \
        == {k for k in before if ":move:" in k or ":job:" in k}


def test_a_drain_waits_for_a_vm_on_its_way_and_then_moves_it_too(fleet3: Store) -> None:
    """Case 8: vm1 is moving h1 -> h2 when h2 is drained."""
    _, move, _ = dispatched(fleet3)
    claimed = fleet3.claim_move(move.id, "h1/runner", lease_s=30)
    assert claimed is not None
    sent: list[Move] = []
    svc = JobService(fleet3, sent.append, planner=DrainPlanner(fleet3, PlacementConfig()))
    start_maintenance(fleet3, ["h2"])
    drain = create_drain(fleet3, ["h2"], 2, "op")
    assert svc.start(drain.id).state == "running"
    assert not sent  # nothing on h2 yet, and the drain does not end either
    time.sleep(0.01)
    assert commit(fleet3, claimed, "h2").state == "succeeded"
    job = svc.advance(drain.id)
    assert [m.vm for m in sent] == ["vm1"] and sent[0].destination in ("h1", "h3")
    assert job.state == "running"


def test_an_interrupted_restart_goes_back_to_failover_and_a_finished_one_stays(
        fleet3: Store) -> None:
    """Case 6: the restarting agent died between moving the record and starting it."""
    from fleet.core.hypervisor import DomainSpec
    from fleet.store.jobs import restart_owner
    from workers.heartbeat import beat_once
    from workers.hypervisors.sim import SimHypervisor
    from workers.recovery import move_record, settle_interrupted

    owner = restart_owner("h1", "h2") + f"/{fleet3.clock() + 60:.3f}"
    assert fleet3.lock_vm("vm1", owner)
    assert move_record(fleet3, "vm1", "h1", "h2") is not None
    assert settle_interrupted(fleet3) == []  # its holder may still be at work
    fleet3.r.set(fleet3.keys.vm_lock("vm1"), restart_owner("h1", "h2") + "/1.000")
    JobService(fleet3, lambda m: None).sweep(60)
    vm = fleet3.get_vm("vm1")
    assert (vm.host, vm.state) == ("h1", "down")  # a failover candidate again
    assert fleet3.lock_owner("vm1") is None
    h3 = SimHypervisor(fleet3.r, fleet3.keys, "h3")
    assert move_record(fleet3, "vm1", "h1", "h3") is not None
    h3.start(DomainSpec.of(fleet3.get_vm("vm1")))
    beat_once(fleet3, h3, "h3/test", ttl_s=5)
    assert fleet3.lock_vm("vm1", restart_owner("h1", "h3") + "/1.000")
    assert settle_interrupted(fleet3) == ["vm1"]
    assert (fleet3.get_vm("vm1").host, fleet3.get_vm("vm1").state) == ("h3", "running")
