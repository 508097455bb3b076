"""The monitor lease: terms and their encoding (pure), the claim script, and guarded
writes that land only while the lease names the writer's term (fake Redis)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fleet.core.errors import Conflict, InvalidInput
from fleet.core.lease import Lease, LostLease, Term, claim_lease, new_term, ttl_ms
from fleet.core.models import Host
from fleet.store import Store
from fleet.store.records import GuardFailed, cas


@pytest.mark.parametrize("term", [Term("m1/abc", 1), Term("monitor a/b c", 42)])
def test_a_term_round_trips_through_the_lease_value(term: Term) -> None:
    assert Term.decode(term.encode()) == term


@pytest.mark.parametrize("raw", [None, "", "m1", "x m1", "7 ", "-1 m1", " m1"])
def test_a_missing_or_malformed_lease_value_names_no_term(raw: str | None) -> None:
    assert Term.decode(raw) is None


def test_a_new_epoch_is_a_takeover_for_this_monitor() -> None:
    assert new_term(0, Term("m1", 1))
    assert not new_term(3, Term("m1", 3))
    assert new_term(3, Term("m1", 4))  # even its own lease, once it lapsed


def test_the_ttl_is_whole_positive_milliseconds() -> None:
    assert ttl_ms(5.0) == 5000
    assert ttl_ms(0.0001) == 1
    with pytest.raises(InvalidInput):
        ttl_ms(0)


def test_the_simulated_lease_is_retaken_with_a_new_epoch_once_it_lapsed() -> None:
    first = Lease("m1", 5.0, 3)
    assert claim_lease(first, "m1", 5.0, 5.0) == Lease("m1", 10.0, 4)
    assert claim_lease(first, "m2", 5.0, 5.0) == Lease("m2", 10.0, 4)


def test_lost_lease_is_a_conflict() -> None:
    assert issubclass(LostLease, Conflict)


def test_claim_renews_for_its_holder_and_takes_over_only_an_absent_lease(store: Store) -> None:
    fo = store.failover
    first = fo.claim("m1", 5.0)
    assert first == Term("m1", 1) and fo.lease() == first
    assert fo.claim("m2", 5.0) is None  # held: no clock decides otherwise
    assert fo.claim("m1", 5.0) == first  # renewal keeps the epoch
    assert 0 < store.r.pttl(store.keys.monitor_lease) <= 5000
    store.r.delete(store.keys.monitor_lease)  # lapsed
    assert fo.claim("m2", 5.0) == Term("m2", 2)
    assert fo.claim("m1", 5.0) is None
    store.r.delete(store.keys.monitor_lease)
    assert fo.claim("m1", 5.0) == Term("m1", 3)  # its old term is not given back


def test_a_guarded_cas_writes_only_while_the_guard_holds(store: Store) -> None:
    store.put_host(Host("h1", 8, 1024))
    key = store.keys.host("h1")

    def to(state: str) -> Callable[[Host], Host]:
        def mutate(host: Host) -> Host:
            host.state = state
            return host
        return mutate

    store.r.set("t:g", "yes")
    assert cas(store.r, key, Host, to("down"), guard=("t:g", "yes")) is not None
    with pytest.raises(GuardFailed):
        cas(store.r, key, Host, to("fenced"), guard=("t:g", "no"))
    assert store.get_host("h1").state == "down"
    assert cas(store.r, key, Host, to("active")) is not None


def test_writes_under_a_stale_term_land_nowhere(store: Store) -> None:
    fo = store.failover
    store.put_host(Host("h1", 8, 1024))
    old = fo.claim("m1", 5.0)
    assert old is not None
    fo.save_state({"by": "m1"}, old)
    fo.push({"type": "confirm", "host": "h1"})
    store.r.delete(store.keys.monitor_lease)
    new = fo.claim("m2", 5.0)
    assert new is not None and new.epoch > old.epoch
    for write in (lambda: fo.save_state({"by": "m1 again"}, old, consumed=1),
                  lambda: fo.save_guard({"v": {}}, old),
                  lambda: fo.set_host_state("h1", "fencing", old),
                  lambda: fo.hold(old)):
        with pytest.raises(LostLease):
            write()
    assert fo.load_state() == {"by": "m1"} and fo.load_guard() == {}
    assert store.get_host("h1").state == "active"
    assert len(fo.peek()) == 1  # the event stays queued for the new leader
    fo.save_state({"by": "m2"}, new, consumed=1)
    assert fo.load_state() == {"by": "m2"} and fo.peek() == []
    assert fo.set_host_state("h1", "fencing", new) == "active"
