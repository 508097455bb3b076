"""Drain planning on the controller's path: the kept placement state against a fresh
build and against the baselines, on the Alibaba fleet loaded into Redis.

    python -m bench.drain_live [--repeat 51] [--redis-url redis://127.0.0.1:6379/0]

The Alibaba pods are placed by the engine (policy stack, as ``bench.placement``), written
into Redis as fleet records under a private prefix (deleted at the end), and then the
fullest host is drained the way the controller does it: ``KeptState.get()`` (apply the
changes since the last plan: one VM record changes between runs, as in a live fleet)
plus ``plan_evacuation``. Baselines run in the same process on the same inventory.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from bench import baselines, convert
from bench.placement import fullest
from fleet.cli.plan import make_config
from fleet.core.fleetstate import FleetState
from fleet.core.models import VM, Host
from fleet.core.placement import place_stream
from fleet.planfiles import Inventory, read_hosts, read_vms
from fleet.store import Store
from workers.drain import fleet_state, plan_drain
from workers.planstate import KeptState


def _load(store: Store, inv: Inventory) -> None:
    with store.r.pipeline(transaction=False) as pipe:
        for h in inv.hosts:  # GPUs as the devices an agent reads from libvirt
            host = Host(h.name, int(h.vcpus), h.memory_mib, node={"devices": {"gpu": h.gpus}})
            pipe.set(store.keys.host(h.name), json.dumps(host.to_dict()))
            pipe.sadd(store.keys.hosts, h.name)
        for v in inv.vms:  # fractional vCPUs are kept as they are (milli-vCPU in the engine)
            vm = VM(v.name, v.name, v.host, v.vcpus, v.memory_mib,  # type: ignore[arg-type]
                    devices={"hostdevs": v.gpus} if v.gpus else {})
            pipe.set(store.keys.vm(v.name), json.dumps(vm.to_dict()))
            pipe.sadd(store.keys.vms, v.name)
        pipe.execute()


def _median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.3f}"


def _inventory(tmp: Path) -> Inventory:
    hosts_f, vms_f = convert.alibaba(tmp / "alibaba")
    hosts, vms = read_hosts(hosts_f), read_vms(vms_f)
    st = FleetState(hosts, make_config("stack"))
    where = {p.vm: p.host for p in place_stream(st, vms) if p.host}
    placed = [type(v)(**{**v.__dict__, "host": where[v.name]}) for v in vms if v.name in where]
    return Inventory(hosts, placed)


def run(url: str, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        inv = _inventory(Path(tmp))
    source = fullest(inv.hosts, inv.vms)
    store = Store.connect(url, f"bench-drain-{uuid.uuid4().hex[:8]}")
    try:
        _load(store, inv)
        _compare(store, inv, source, repeat)
    finally:
        store.purge()


def _compare(store: Store, inv: Inventory, source: str, repeat: int) -> None:
    config = make_config("spread")
    kept = KeptState(store, config)
    kept.get()
    others = [v for v in inv.vms if v.host != source]
    rng = random.Random(7)
    kept_s, fresh_s = [], []
    for _ in range(repeat):
        vm = rng.choice(others)  # live churn: one VM record changes between plans
        store.update_vm(vm.name, priority=rng.randint(0, 9))
        t0 = time.perf_counter()
        plan = plan_drain(kept.get(), [source], 2)
        kept_s.append(time.perf_counter() - t0)
    for _ in range(max(5, repeat // 5)):
        t0 = time.perf_counter()
        plan_drain(fleet_state(store, config), [source], 2)
        fresh_s.append(time.perf_counter() - t0)
    nova_build, nova_plan = [], []
    for _ in range(max(5, repeat // 5)):
        t0 = time.perf_counter()
        s, lifted = baselines.prepare(inv.hosts, inv.vms, source)
        t1 = time.perf_counter()
        nova = baselines.drain_plan("nova-style", s, lifted, source)
        nova_build.append(time.perf_counter() - t0)
        nova_plan.append(time.perf_counter() - t1)
    n = sum(1 for v in inv.vms if v.host == source)
    placed = {name: len(baselines.drain(name, inv.hosts, inv.vms, source))
              for name in baselines.BASELINES}
    print(f"### Alibaba, drain of the fullest host ({source}, {n} VMs), controller path\n")
    print("VMs each baseline re-places: " + ", ".join(f"{k} {v}" for k, v in placed.items())
          + "\n")
    print("| planner | placed | median ms | rebuilds |\n| --- | --- | --- | --- |")
    print(f"| fleet, kept state (controller: apply changes + plan) | {len(plan.moves)} | "
          f"{_median_ms(kept_s)} | {kept.rebuilds - 1} |")
    print(f"| fleet, fresh state from Redis (CLI --dry-run) | {len(plan.moves)} | "
          f"{_median_ms(fresh_s)} | - |")
    print(f"| nova-style, build + plan | {len(nova)} | {_median_ms(nova_build)} | - |")
    print(f"| nova-style, plan only | {len(nova)} | {_median_ms(nova_plan)} | - |")
    ratio = statistics.median(nova_build) / statistics.median(kept_s)
    print(f"\nkept state vs nova-style build + plan: {ratio:.1f}x faster")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=51)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()
    run(args.redis_url, args.repeat)


if __name__ == "__main__":
    main()
