"""The migration runner and reconciler against the sim hypervisor on a fake Redis."""

from __future__ import annotations

import time
from collections.abc import Callable

from fleet.core.hypervisor import (
    DomainGone,
    DomainState,
    MigrationParams,
    MigrationTarget,
    TransientError,
)
from fleet.core.models import Host, JobKind, Move, Progress
from fleet.settings import Settings
from fleet.store import Store
from workers.hypervisors.sim import SimHypervisor
from workers.jobs import JobService
from workers.reconciler import Reconciler
from workers.runner import MigrationRunner

FAST = Settings(poll_interval_s=0.05, move_lease_s=5, stall_timeout_s=5)


def sim(store: Store, host: str, speed: float = 50.0) -> SimHypervisor:
    return SimHypervisor(store.r, store.keys, host, speed=speed, bandwidth_mib_s=1000)


def submit(store: Store, to: str = "", vm: str = "vm1") -> Move:
    job = store.create_move_job(JobKind.MIGRATE, "test", [Move("", "", vm, "h1", target=to)])
    sent: list[Move] = []
    JobService(store, sent.append).start(job.id)
    assert len(sent) == 1
    return sent[0]


def runner(store: Store, speed: float = 50.0) -> tuple[MigrationRunner, list[Progress]]:
    samples: list[Progress] = []
    run = MigrationRunner(store, sim(store, "h1", speed), FAST, lambda h: sim(store, h.name),
                          "h1/test", publish=lambda m, p: samples.append(p))
    return run, samples


def test_migration_moves_the_domain_and_the_record(fleet3: Store) -> None:
    move = submit(fleet3, to="h2")
    run, samples = runner(fleet3, speed=10.0)
    outcome = run.run(move.id)
    assert outcome.state == "succeeded", outcome.detail
    assert fleet3.get_vm("vm1").host == "h2"
    assert sim(fleet3, "h2").lookup("vm1").state is DomainState.RUNNING
    try:
        sim(fleet3, "h1").lookup("vm1")
    except DomainGone:
        pass
    else:
        raise AssertionError("VM still on the source")
    assert samples and samples[-1].processed_mib >= samples[0].processed_mib
    assert fleet3.claimed("h2") == (0, 0)
    job = fleet3.get_job(move.job_id)
    JobService(fleet3, lambda m: None).advance(job.id)
    assert fleet3.get_job(job.id).state == "succeeded"


def test_second_delivery_does_nothing(fleet3: Store) -> None:
    move = submit(fleet3, to="h2")
    run, _ = runner(fleet3)
    assert run.run(move.id).state == "succeeded"
    again = run.run(move.id)
    assert again.state == "succeeded" and "not claimed" in again.detail
    kinds = [e["kind"] for _, e in fleet3.events(move.job_id)]
    assert kinds.count("move.claimed") == 1


def test_dead_destination_is_excluded_and_replanned(fleet3: Store) -> None:
    fleet3.r.delete(fleet3.keys.heartbeat("h2"))
    move = submit(fleet3, to="")
    assert move.destination in ("h2", "h3")
    if move.destination == "h3":
        fleet3.r.delete(fleet3.keys.heartbeat("h3"))
        fleet3.beat("h2", {}, 600)
    run, _ = runner(fleet3)
    first = run.run(move.id)
    assert first.state == "pending" and "re-plan" in first.detail
    sent: list[Move] = []
    JobService(fleet3, sent.append).advance(move.job_id)
    assert sent and sent[0].destination != move.destination
    assert move.destination in sent[0].excluded
    assert run.run(sent[0].id).state == "succeeded"


def test_policy_aborts_a_migration_that_cannot_converge(fleet3: Store) -> None:
    fleet3.put_host(Host("h1", 8, 16384))
    hv = sim(fleet3, "h1", speed=5.0)
    hv.destroy("vm1")
    from fleet.core.hypervisor import DomainSpec

    hv.start(DomainSpec("vm1", "u-1", 2, 2048, dirty_mib_s=5000))
    move = submit(fleet3, to="h2")
    settings = Settings(poll_interval_s=0.05, stall_timeout_s=0.5, move_lease_s=5)
    run = MigrationRunner(fleet3, hv, settings, lambda h: sim(fleet3, h.name), "h1/t")
    outcome = run.run(move.id)
    assert outcome.state == "failed" and "aborted by policy" in outcome.detail
    assert hv.lookup("vm1").state is DomainState.RUNNING
    try:
        sim(fleet3, "h2").lookup("vm1")
    except DomainGone:
        pass
    else:
        raise AssertionError("incoming domain left on the destination")


def test_reconciler_settles_an_orphaned_move(fleet3: Store) -> None:
    move = submit(fleet3, to="h2")
    claimed = fleet3.claim_move(move.id, "h1/dead-runner", lease_s=0.001)
    time.sleep(0.01)
    assert claimed is not None
    # the dead runner had started: an incoming domain sits paused on h2
    src = sim(fleet3, "h1")
    sim(fleet3, "h2")._put("h2", src.lookup("vm1").__class__(
        "vm1", "u-1", DomainState.PAUSED, 2, 2048, migrating=True), 0.0)
    rec = Reconciler(fleet3, {"h1": src}, lambda h: sim(fleet3, h.name), FAST, "h1/new")
    (outcome,) = rec.sweep()
    assert outcome.state == "failed" and "still runs on h1" in outcome.detail
    assert src.lookup("vm1").state is DomainState.RUNNING
    assert [d.name for d in sim(fleet3, "h2").list_domains()] == []
    assert fleet3.get_vm("vm1").host == "h1"


def test_reconciler_commits_a_finished_migration(fleet3: Store) -> None:
    move = submit(fleet3, to="h2")
    assert fleet3.claim_move(move.id, "h1/dead", lease_s=0.001) is not None
    time.sleep(0.01)
    sim(fleet3, "h1").migrate("vm1", MigrationTarget("h2"), MigrationParams())
    rec = Reconciler(fleet3, {"h1": sim(fleet3, "h1")}, lambda h: sim(fleet3, h.name), FAST,
                     "h1/new")
    (outcome,) = rec.sweep()
    assert outcome.state == "succeeded"
    assert fleet3.get_vm("vm1").host == "h2"


def test_cancel_aborts_a_running_migration(fleet3: Store) -> None:
    import threading

    move = submit(fleet3, to="h2")
    run, samples = runner(fleet3, speed=0.5)
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(run.run(move.id)))
    thread.start()
    deadline = time.time() + 10
    while not samples and time.time() < deadline:
        time.sleep(0.05)
    JobService(fleet3, lambda m: None).cancel(move.job_id, by="test")
    thread.join(10)
    outcome = result[0]
    assert outcome.state == "cancelled"
    assert sim(fleet3, "h1").lookup("vm1").state is DomainState.RUNNING
    assert [d.name for d in sim(fleet3, "h2").list_domains()] == []
    JobService(fleet3, lambda m: None).advance(move.job_id)
    job = fleet3.get_job(move.job_id)
    assert job.state == "cancelled" and job.summary["cancelled"] == ["vm1"]
    assert fleet3.claimed("h2") == (0, 0)


def test_reservations_never_overcommit(fleet3: Store) -> None:
    limit = (8.0, 16384)
    assert fleet3.try_reserve("h2", "m1", 4, 8000, limit)
    assert fleet3.try_reserve("h2", "m2", 4, 8000, limit)
    assert not fleet3.try_reserve("h2", "m3", 1, 100, limit)
    fleet3.release("h2", "m1")
    assert fleet3.try_reserve("h2", "m3", 1, 100, limit)


class _Silent:
    """A recorded host that cannot be asked."""

    def lookup(self, name: str) -> None:
        raise TransientError("no answer")


def _asked_now(store: Store) -> Callable[[Host], SimHypervisor]:
    """Each host's own hypervisor, as an agent reaches another host's."""
    def locate(host: Host) -> SimHypervisor:
        return sim(store, host.name)

    return locate


def test_strays_are_undefined_and_a_second_running_copy_is_paused_then_removed(
        fleet3: Store) -> None:
    from fleet.core.hypervisor import DomainInfo
    from workers.inventory import sweep_strays

    h2 = sim(fleet3, "h2")
    locate = _asked_now(fleet3)
    h2._put("h2", DomainInfo("vm1", "u-1", DomainState.SHUTOFF, 2, 2048), 0.0)
    assert sweep_strays(fleet3, h2, locate) == ["vm1"]
    assert h2.list_domains() == []
    h2._put("h2", DomainInfo("vm1", "u-1", DomainState.RUNNING, 2, 2048), 0.0)
    # h1, where vm1 is recorded, cannot be asked: the record may be the wrong one
    assert sweep_strays(fleet3, h2, lambda host: _Silent()) == []
    assert [d.name for d in h2.list_domains()] == ["vm1"]
    alerts = [e for _, e in fleet3.journal.audit() if e["kind"] == "alert"]
    assert alerts and alerts[-1]["alert"] == "record_disagrees"
    assert sweep_strays(fleet3, h2, locate) == ["vm1"]  # h1 runs vm1 too
    assert h2.list_domains() == []
    steps = [e["kind"] for _, e in fleet3.journal.audit() if e["kind"].startswith("vm.copy")]
    assert steps == ["vm.copy_pause", "vm.copy_remove"]
    assert sim(fleet3, "h1").lookup("vm1").state is DomainState.RUNNING
    assert sweep_strays(fleet3, sim(fleet3, "h1"), locate) == []  # its own host: untouched


def test_a_copy_the_recorded_host_does_not_hold_was_moved_and_is_kept(fleet3: Store) -> None:
    """An operator's ``virsh migrate`` (running) or define-and-undefine (stopped): the
    recorded host's heartbeat may still list the VM; asked now, it does not hold it."""
    from fleet.core.hypervisor import DomainInfo
    from workers.heartbeat import beat_once
    from workers.inventory import sweep_strays

    h1, h2 = sim(fleet3, "h1"), sim(fleet3, "h2")
    beat_once(fleet3, h1, "h1/test", ttl_s=5)  # h1 reports vm1 running, a moment ago
    h1.destroy("vm1")
    h2._put("h2", DomainInfo("vm1", "u-1", DomainState.RUNNING, 2, 2048), 0.0)
    locate = _asked_now(fleet3)
    assert sweep_strays(fleet3, h2, locate) == []
    h2._put("h2", DomainInfo("vm1", "u-1", DomainState.SHUTOFF, 2, 2048), 0.0)
    assert sweep_strays(fleet3, h2, locate) == []
    assert [d.state for d in h2.list_domains()] == [DomainState.SHUTOFF]
    assert not [e for _, e in fleet3.journal.audit() if e["kind"].startswith("vm.copy")]


def test_reconciler_waits_out_the_moment_between_switch_over_and_source_cleanup(
        fleet3: Store) -> None:
    """Seen on real libvirt under load: the orphaned job has ended and the destination
    runs the guest, but the source still shows its paused copy. That is not a VM that
    needs an operator: look again until the source lets go, then commit."""
    from fleet.core.hypervisor import DomainInfo

    move = submit(fleet3, to="h2")
    assert fleet3.claim_move(move.id, "h1/dead", lease_s=0.001) is not None
    time.sleep(0.01)
    src = sim(fleet3, "h1")
    src.migrate("vm1", MigrationTarget("h2"), MigrationParams())
    src._put("h1", DomainInfo("vm1", "u-1", DomainState.PAUSED, 2, 2048), 0.0)
    looks: list[float] = []

    def sleep(s: float) -> None:
        looks.append(s)
        if len(looks) == 3:
            src.destroy("vm1")  # libvirt's confirm phase ends: the source copy goes

    rec = Reconciler(fleet3, {"h1": src}, lambda h: sim(fleet3, h.name), FAST, "h1/new",
                     sleep=sleep)
    (outcome,) = rec.sweep()
    assert outcome.state == "succeeded", outcome.detail
    assert len(looks) == 3
    assert fleet3.get_vm("vm1").host == "h2"
    assert fleet3.get_vm("vm1").state == "running"


def test_reconciler_resumes_a_lone_paused_source_only_after_the_settle_time(
        fleet3: Store) -> None:
    from fleet.core.hypervisor import DomainInfo

    move = submit(fleet3, to="h2")
    assert fleet3.claim_move(move.id, "h1/dead", lease_s=0.001) is not None
    time.sleep(0.01)
    src = sim(fleet3, "h1")
    src._put("h1", DomainInfo("vm1", "u-1", DomainState.PAUSED, 2, 2048), 0.0)
    settings = Settings(poll_interval_s=0.01, move_lease_s=5, move_settle_s=0.2)
    started = time.monotonic()
    rec = Reconciler(fleet3, {"h1": src}, lambda h: sim(fleet3, h.name), settings, "h1/new")
    (outcome,) = rec.sweep()
    assert time.monotonic() - started >= 0.2
    assert outcome.state == "failed" and "still runs on h1" in outcome.detail
    assert "source: paused, destination: absent" in outcome.detail
    assert src.lookup("vm1").state is DomainState.RUNNING  # the only copy runs again
    events = [e for _, e in fleet3.events(move.job_id)]
    assert any(e["kind"] == "vm.copy_resume" and e["host"] == "h1" for e in events), events


def test_a_runner_that_lost_its_move_writes_nothing(fleet3: Store) -> None:
    from workers.outcomes import commit, settle_failed

    move = submit(fleet3, to="h2")
    mine = fleet3.claim_move(move.id, "h1/slow", lease_s=0.001)
    assert mine is not None
    time.sleep(0.01)
    theirs = fleet3.take_over(move.id, "h1/reconciler", lease_s=30)
    assert theirs is not None
    lost = commit(fleet3, mine, "h2")
    assert lost.state != "succeeded" and "not settled here" in lost.detail
    assert settle_failed(fleet3, mine, "late", vm_state="down").state != "failed"
    vm = fleet3.get_vm("vm1")
    assert (vm.host, vm.state) == ("h1", "running")
    assert fleet3.get_move(move.id).state == theirs.state  # still the reconciler's
    assert commit(fleet3, theirs, "h2").state == "succeeded"
    assert fleet3.get_vm("vm1").host == "h2"
