"""Monitor leadership on a real Redis: the lease's TTL is Redis's, each term has a rising
epoch, and a leader that lost its lease mid-round writes and sends nothing.

Two ``Monitor`` objects share one Redis in this process, each with its own store, fake
clock and recording ``send``; the test drives their rounds by hand and interleaves them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from fleet.core.failover_model import Fence
from fleet.core.lease import LostLease, Term
from fleet.core.models import VM, Host
from fleet.settings import load_settings
from fleet.store import Store
from workers.adoption import adopt
from workers.monitor import Monitor

pytestmark = pytest.mark.integration

Sent = list[tuple[str, str, dict[str, Any]]]


class Clock:
    """A monitor's own clock, moved by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    name = f"it-epoch-{uuid.uuid4().hex[:8]}"
    yield name
    Store.connect(redis_url, name).purge()


def monitor(redis_url: str, prefix: str, name: str, clock: Clock, sent: Sent,
            ttl_s: float = 30.0) -> Monitor:
    settings = load_settings(redis_url=redis_url, prefix=prefix, failover_witness=False,
                             failover_suspect_after_s=1.5, failover_down_after_s=2.5,
                             failover_fence_timeout_s=3.0, failover_lease_ttl_s=ttl_s)

    def send(task: str, kwargs: dict[str, Any]) -> None:
        sent.append((name, task, kwargs))

    return Monitor(Store.connect(redis_url, prefix), settings, name, send, clock=clock)


def fleet3(store: Store, beating: tuple[str, ...] = ("h1", "h2", "h3")) -> None:
    for name in ("h1", "h2", "h3"):
        if store.find_host(name) is None:
            store.put_host(Host(name, vcpus=16, memory_mib=65536))
    for name in beating:
        store.beat(name, {"agent": "test", "domains": []}, ttl_s=600)
        time.sleep(0.002)  # a new beat carries a new time


def test_a_leader_that_lost_its_lease_mid_round_writes_and_sends_nothing(
        redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: Sent = []
    ca, cb = Clock(0.0), Clock(0.0)
    a = monitor(redis_url, prefix, "a", ca, sent)
    b = monitor(redis_url, prefix, "b", cb, sent)
    store = a.store
    fleet3(store)
    store.put_vm(VM("vm1", "u-1", "h1", 1, 512, ha=True))
    assert a.tick() is not None and b.tick() is None  # a leads, b stands by
    first = store.failover.lease()
    assert first is not None and first.holder == "a"
    ca.now = cb.now = 2.0
    fleet3(store, ("h2", "h3"))  # h1 falls silent
    assert a.tick() is not None and b.tick() is None
    assert store.get_host("h1").state == "suspect"

    attempted: list[dict[str, Any]] = []
    taken: list[Any] = []
    save = a.store.failover.save_state

    def stall_then_save(state: dict[str, Any], term: Term, consumed: int = 0) -> None:
        """a decided; it stalls, its lease lapses, b takes over; then a saves."""
        attempted.append(state)
        store.r.delete(store.keys.monitor_lease)
        taken.append(b.tick())
        save(state, term, consumed)

    monkeypatch.setattr(a.store.failover, "save_state", stall_then_save)
    ca.now, cb.now = 3.2, 3.0
    fleet3(store, ("h2", "h3"))
    sent.clear()
    assert a.tick() is None  # a's round ended at its first write
    assert attempted and attempted[0]["hosts"]["h1"]["state"] == "fencing"

    b_decision = taken[0]
    assert b_decision is not None
    lease = store.failover.lease()
    assert lease is not None and lease.holder == "b" and lease.epoch > first.epoch
    assert store.failover.load_state() == b_decision.state.to_dict() != attempted[0]
    assert [(who, task) for who, task, _ in sent] == [("b", "fleet.host.fence")]
    assert sent[0][2]["epoch"] == lease.epoch and sent[0][2]["host"] == "h1"

    # every other write a makes from its stale round is refused too
    for stale in (lambda: a._set_vm_state("vm1", "h1", "down"),
                  lambda: adopt(a.store, "vm1", "h1", "h2", a.term),
                  lambda: a._open_job("h1"),
                  lambda: a._act(Fence("h1", 1, 3.0))):
        with pytest.raises(LostLease):
            stale()
    vm = store.get_vm("vm1")
    assert (vm.host, vm.state) == ("h1", "running")
    assert store.failover.job("h1") is None
    assert len(sent) == 1
    assert store.failover.load_state() == b_decision.state.to_dict()

    monkeypatch.undo()
    ca.now = 4.0
    assert a.tick() is None  # b's lease holds: a stands by
    assert store.failover.lease() == lease


def test_a_leader_that_stops_renewing_loses_the_lease_after_the_ttl(
        redis_url: str, prefix: str) -> None:
    sent: Sent = []
    clock = Clock(100.0)  # never moves: only Redis's TTL can end the lease
    a = monitor(redis_url, prefix, "a", clock, sent, ttl_s=0.4)
    b = monitor(redis_url, prefix, "b", clock, sent, ttl_s=0.4)
    fleet3(a.store)
    assert a.tick() is not None
    first = a.store.failover.lease()
    assert first is not None and first.holder == "a"
    for _ in range(8):  # 0.8 s: twice the TTL, kept alive by a's renewals
        time.sleep(0.1)
        assert a.tick() is not None and b.tick() is None
    assert a.store.failover.lease() == first
    assert 0 < a.store.r.pttl(a.store.keys.monitor_lease) <= 400

    time.sleep(0.6)  # a stalls past the TTL
    assert a.store.failover.lease() is None
    assert b.tick() is not None
    after = b.store.failover.lease()
    assert after == Term("b", first.epoch + 1)
    assert a.tick() is None
    with pytest.raises(LostLease):
        a.store.failover.save_state({}, first)
    assert b.store.failover.load_state() != {}


def test_a_fence_decided_under_an_ended_term_is_skipped(redis_url: str, prefix: str) -> None:
    """A fence message of epoch 1 that arrives once epoch 2 has begun powers nothing off:
    the new leader decided again and sent its own."""
    from tasks.failover_tasks import fence_host
    from tasks.runtime import configure

    store = Store.connect(redis_url, prefix)
    first = store.failover.claim("a", 0.05)
    assert first is not None and not store.failover.superseded(first.epoch)
    time.sleep(0.1)  # a's lease lapses
    second = store.failover.claim("b", 30.0)
    assert second is not None and second.epoch > first.epoch
    assert store.failover.superseded(first.epoch)
    assert not store.failover.superseded(second.epoch) and not store.failover.superseded(0)

    settings = load_settings(redis_url=redis_url, prefix=prefix)
    configure(settings)
    result = fence_host.run("h1", 1, 0.5, epoch=first.epoch)
    assert result["skipped"] is True and result["ok"] is False
    assert store.failover.peek() == []  # no fence result reaches the monitor
    kinds = [e["kind"] for _, e in store.journal.audit()]
    assert "host.fence_skipped" in kinds and "host.fenced" not in kinds
