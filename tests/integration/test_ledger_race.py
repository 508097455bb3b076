"""The capacity ledger under real concurrency: processes against a real redis-server.

Reservations from several processes on one host must never pass its limit, and VM
records moved between hosts by several processes at once must leave the ledger equal
to a recount. (In-process fake Redis would serialise these and prove nothing.)
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Callable

from fleet.core.models import VM, Host
from fleet.store import Store

LIMIT = (40.0, 40 * 1024)


def _reserve(url: str, prefix: str, worker: int, out: multiprocessing.Queue[int]) -> None:
    store = Store.connect(url, prefix)
    won = sum(store.try_reserve("h1", f"m{worker}-{i}", 1, 1024, LIMIT) for i in range(30))
    out.put(won)


def _shuffle(url: str, prefix: str, worker: int) -> None:
    store = Store.connect(url, prefix)
    for i in range(60):
        name = f"vm{(worker + i) % 8}"
        store.update_vm(name, host=f"h{1 + (worker + i) % 3}", vcpus=1 + i % 4)


def _run(target: Callable[..., None], args: list[tuple[object, ...]]) -> None:
    procs = [multiprocessing.Process(target=target, args=a) for a in args]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0


def test_reservations_from_many_processes_never_pass_the_limit(redis_url: str) -> None:
    prefix = f"ledger-{uuid.uuid4().hex[:6]}"
    store = Store.connect(redis_url, prefix)
    store.put_host(Host("h1", vcpus=40, memory_mib=40 * 1024))
    store.put_vm(VM("base", "u", "h1", 4, 4096))
    out: multiprocessing.Queue[int] = multiprocessing.Queue()
    _run(_reserve, [(redis_url, prefix, w, out) for w in range(4)])
    won = sum(out.get(timeout=5) for _ in range(4))
    assert won == 36  # 40 minus the VM's 4: every attempt beyond that refused
    assert store.claimed("h1") == (36, 36 * 1024)
    store.purge()


def test_vm_records_moved_by_many_processes_leave_the_ledger_right(redis_url: str) -> None:
    prefix = f"ledger-{uuid.uuid4().hex[:6]}"
    store = Store.connect(redis_url, prefix)
    for i in range(8):
        store.put_vm(VM(f"vm{i}", f"u{i}", "h1", 2, 1024))
    _run(_shuffle, [(redis_url, prefix, w) for w in range(4)])
    recount: dict[str, tuple[int, int]] = {}
    for vm in store.list_vms():
        cpu, mem = recount.get(vm.host, (0, 0))
        recount[vm.host] = (cpu + vm.vcpus, mem + vm.memory_mib)
    assert {h: u for h, u in store.ledger_usage().items() if u != (0, 0)} == recount
    assert sum(store.get_vm(f"vm{i}").version for i in range(8)) == 4 * 60  # all applied
    store.purge()
