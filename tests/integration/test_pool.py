"""The store's connection pool is bounded and blocking: a thread that finds every
connection taken waits for one instead of failing (real redis-server)."""

from __future__ import annotations

import threading
import time
import uuid

from fleet.store import Store


def test_a_full_pool_makes_a_caller_wait_not_fail(redis_url: str) -> None:
    store = Store.connect(redis_url, f"pool-{uuid.uuid4().hex[:6]}", max_connections=1)
    store.r.set(store.keys.vms + ":probe", "1")
    held = threading.Event()
    results: list[object] = []

    def hold() -> None:
        with store.r.pipeline() as pipe:
            pipe.watch(store.keys.vms + ":probe")  # keeps the only connection
            held.set()
            time.sleep(0.5)
            pipe.unwatch()

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    started = time.monotonic()
    try:
        results.append(store.r.get(store.keys.vms + ":probe"))
    except Exception as exc:  # a non-blocking pool raises "Too many connections"
        results.append(exc)
    waited = time.monotonic() - started
    holder.join(5)
    assert results == ["1"] and waited >= 0.3, (results, waited)
    store.purge()
