"""Unit-test fixtures: a fake Redis (fakeredis) and a store on it."""

from __future__ import annotations

import fakeredis
import pytest

from fleet.core.models import VM, Host
from fleet.store import Keys, Store
from workers.hypervisors.sim import SimHypervisor


@pytest.fixture
def store() -> Store:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    return Store(client, Keys("t"))


@pytest.fixture
def fleet3(store: Store) -> Store:
    """Three sim hosts with live heartbeats and one VM on h1."""
    for name in ("h1", "h2", "h3"):
        store.put_host(Host(name, vcpus=8, memory_mib=16384))
        store.beat(name, {"agent": "test"}, ttl_s=600)
    hv = SimHypervisor(store.r, store.keys, "h1", speed=50.0)
    from workers.inventory import create_vm

    create_vm(store, hv, VM("vm1", "u-1", "h1", 2, 2048, dirty_mib_s=50.0))
    return store
