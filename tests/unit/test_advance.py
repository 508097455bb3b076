"""Advancing a job never waits behind another advance of it, and none is lost."""

from __future__ import annotations

import pytest

from fleet.core.models import JobKind, Move
from fleet.store import Store
from workers.jobs import JobService


def test_an_advance_while_another_holds_the_job_returns_at_once_and_is_kept(
        fleet3: Store) -> None:
    sent: list[Move] = []
    service = JobService(fleet3, sent.append)
    job = fleet3.create_move_job(JobKind.MIGRATE, "t", [Move("", "", "vm1", "h1")])
    fleet3.update_job(job.id, lambda j: (setattr(j, "state", "running"), j)[1])
    holder = fleet3.lock(f"job:{job.id}", timeout_s=30)
    assert holder.acquire(blocking=False)
    service.advance(job.id)  # returns although the lock is held: nothing launched yet
    assert sent == [] and fleet3.r.exists(fleet3.keys.job_asked(job.id))
    holder.release()
    service.advance(job.id)  # the next advance (the holder's re-check, or the sweeper)
    assert [m.vm for m in sent] == ["vm1"]
    assert not fleet3.r.exists(fleet3.keys.job_asked(job.id))


def test_an_advance_asked_during_a_run_is_run_by_the_holder(
        fleet3: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[Move] = []
    calls: list[str] = []
    service = JobService(fleet3, sent.append)
    job = fleet3.create_move_job(JobKind.MIGRATE, "t", [Move("", "", "vm1", "h1")])
    fleet3.update_job(job.id, lambda j: (setattr(j, "state", "running"), j)[1])
    inner = service._advance_locked

    def once_more_asked(job_id: str) -> object:
        calls.append(job_id)
        if len(calls) == 1:  # another process asks while this one holds the lock
            assert JobService(fleet3, sent.append).advance(job_id) is not None
        return inner(job_id)

    monkeypatch.setattr(service, "_advance_locked", once_more_asked)
    service.advance(job.id)
    assert calls == [job.id, job.id]  # the holder ran the advance asked meanwhile
    assert [m.vm for m in sent] == ["vm1"]


def test_move_ends_send_one_advance_until_it_runs_and_none_is_lost(fleet3: Store) -> None:
    sent: list[Move] = []
    service = JobService(fleet3, sent.append)
    job = fleet3.create_move_job(JobKind.MIGRATE, "t", [Move("", "", "vm1", "h1")])
    fleet3.update_job(job.id, lambda j: (setattr(j, "state", "running"), j)[1])
    assert fleet3.want_advance(job.id)  # the first end sends a message
    assert not fleet3.want_advance(job.id)  # the next ones only ask: one is on its way
    assert not fleet3.want_advance(job.id)
    service.advance(job.id)  # the message's task runs every ask made before it
    assert [m.vm for m in sent] == ["vm1"]
    assert not fleet3.r.exists(fleet3.keys.job_asked(job.id))
    assert fleet3.want_advance(job.id)  # an end after the run sends again


def test_a_lost_advance_message_stops_blocking_sends_after_its_ttl(fleet3: Store) -> None:
    assert fleet3.want_advance("j1", sent_ttl_s=20)
    assert 0 < fleet3.r.pttl(fleet3.keys.job_sent("j1")) <= 20_000
    assert not fleet3.want_advance("j1")
    fleet3.r.delete(fleet3.keys.job_sent("j1"))  # as its TTL does
    assert fleet3.want_advance("j1")


def test_a_drain_runs_its_concurrency_per_drained_host(store: Store) -> None:
    from fleet.core.models import VM, Host
    from fleet.core.planmodel import PlacementConfig
    from workers.drain import DrainPlanner, create_drain

    for name in ("h1", "h2", "h3", "h4"):
        store.put_host(Host(name, vcpus=64, memory_mib=262144))
    for i in range(8):
        store.put_vm(VM(f"v{i}", f"u{i}", "h1" if i < 4 else "h2", 1, 512))
    job = create_drain(store, ["h1", "h2"], 2, "t")
    assert job.concurrency == 4  # 2 at once on each of the 2 drained hosts
    sent: list[Move] = []
    service = JobService(store, sent.append, planner=DrainPlanner(store, PlacementConfig()))
    service.start(job.id)
    assert len(sent) == 4 and sorted(m.source for m in sent) == ["h1", "h1", "h2", "h2"]
    assert {m.destination for m in sent} <= {"h3", "h4"}
