"""Placement and drain-planning benchmark: fleet's engine against named baselines.

Run from the repository root::

    python -m bench.placement [--data ../shared/data] [--nova-limit N]

It converts the shared fleets into inventory files in a temporary directory
(``bench.convert``), then runs, in one process and on the same inputs, fleet's engine
through the code behind ``fleet plan`` (``fleet.cli.plan.run_*``) and the baselines of
``bench.baselines``. Every placement is checked by ``bench.baselines.verify`` (an
independent check of overcommit, group rules, NUMA cells and GPUs, from the cells and
devices each placement names). Prints Markdown tables.

1. Alibaba: place the 8,152 pods as VM requests on the 1,523 nodes, GPUs counted
   (throughput, accepted), with the engine's policies stack and spread.
2. Alibaba drain: from the engine's packed placement of step 1, plan the evacuation of
   the fullest host (latency: median of repeated runs; state build included, and
   planning alone on a prebuilt state as the controller would hold it).
3. Huawei C1..C5: place each request sequence with its affinity, anti-affinity and
   fault-domain rules and its NUMA pinning (accepted, violations).
4. N+1 capacity report on the Alibaba placement.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import baselines, convert
from fleet.cli.plan import make_config, run_capacity, run_drain, run_place
from fleet.core.evacuation import plan_evacuation
from fleet.core.fleetstate import FleetState
from fleet.core.planmodel import PlanHost, PlanVM
from fleet.planfiles import Inventory, read_hosts, read_inventory, read_vms, write_json

ENGINE = "fleet engine"


def _timed(fn: Callable[[], object], repeat: int) -> tuple[object, float]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times) * 1000


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: Sequence[str], rows: list[list[object]]) -> None:
    print(_row(header))
    print(_row(["---"] * len(header)))
    for r in rows:
        print(_row(r))
    print()


def _checked(label: str, hosts: Sequence[PlanHost], reqs: Sequence[PlanVM],
             got: tuple[baselines.Placement, baselines.Slots], ms: float) -> list[object]:
    check = baselines.verify(hosts, reqs, *got)
    return [label, len(reqs), len(got[0]), check["rule_violations"],
            check["overcommitted_hosts"], check["numa_violations"], check["gpu_violations"],
            f"{ms:.0f}", f"{len(reqs) / ms * 1000:,.0f}"]


def place_rows(hosts_f: Path, vms_f: Path, nova_limit: int | None,
               policies: Sequence[str] = ("stack",),
               ) -> tuple[list[list[object]], dict[str, str], baselines.Slots]:
    """Rows of the engine (one per policy) and of the baselines; the engine's placement
    and slots with the first policy."""
    hosts, vms = read_hosts(hosts_f), read_vms(vms_f)
    rows, kept = [], None
    for policy in policies:
        out = run_place(hosts_f, vms_f, make_config(policy))
        where = {p["vm"]: p["host"] for p in out["placements"] if p["host"]}
        slots = {p["vm"]: (tuple(p.get("cells", ())), tuple(p.get("devices", ())))
                 for p in out["placements"] if p["host"]}
        rows.append(_checked(f"{ENGINE} ({policy})", hosts, vms, (where, slots),
                             out["planning_ms"]))
        kept = kept or (where, slots)
    assert kept is not None
    for name in baselines.BASELINES:
        reqs = vms[:nova_limit] if name == "nova-style" and nova_limit else vms
        t0 = time.perf_counter()
        got = baselines.place(name, hosts, reqs)
        ms = (time.perf_counter() - t0) * 1000
        label = name if len(reqs) == len(vms) else f"{name} (first {len(reqs)})"
        rows.append(_checked(label, hosts, reqs, got, ms))
    return rows, *kept


PLACE_HEADER = ["algorithm", "requests", "accepted", "rule violations", "overcommitted hosts",
                "NUMA violations", "GPU violations", "time ms", "VMs/s"]


def fullest(hosts: Sequence[PlanHost], vms: Sequence[PlanVM]) -> str:
    use: dict[str, list[float]] = {h.name: [0.0, 0.0, 0.0] for h in hosts}
    for vm in vms:
        u = use[vm.host]
        u[0], u[1], u[2] = u[0] + vm.vcpus, u[1] + vm.memory_mib, u[2] + 1
    cap = {h.name: h for h in hosts}

    def key(name: str) -> tuple[float, float]:
        u, h = use[name], cap[name]
        return max(u[0] / max(h.vcpus, 1e-9), u[1] / max(h.memory_mib, 1)), u[2]
    return max(use, key=key)


def most_vms(vms: Sequence[PlanVM]) -> str:
    count: dict[str, int] = {}
    for vm in vms:
        count[vm.host] = count.get(vm.host, 0) + 1
    return max(sorted(count), key=lambda h: count[h])


def _baseline_drain(name: str, inv: Inventory, source: str, repeat: int) -> list[object]:
    build, plan, placed = [], [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        s, lifted = baselines.prepare(inv.hosts, inv.vms, source)
        t1 = time.perf_counter()
        placed = len(baselines.drain_plan(name, s, lifted, source))
        t2 = time.perf_counter()
        build.append(t2 - t0)
        plan.append(t2 - t1)
    return [name, placed, f"{statistics.median(build) * 1000:.2f}",
            f"{statistics.median(plan) * 1000:.2f}", "-"]


def drain_rows(inv_f: Path, source: str, repeat: int) -> list[list[object]]:
    inv = read_inventory(inv_f)
    config = make_config("spread")
    plan, _ = run_drain(inv_f, source, config)
    e2e = _timed(lambda: plan_evacuation(FleetState(inv.hosts, config, inv.vms), [source]),
                 repeat)[1]
    st = FleetState(inv.hosts, config, inv.vms)
    alone = _timed(lambda: plan_evacuation(st, [source]), repeat)[1]
    rows: list[list[object]] = [[ENGINE, len(plan.moves), f"{e2e:.2f}", f"{alone:.3f}",
                                 plan.waves]]
    for name in baselines.BASELINES:
        rows.append(_baseline_drain(name, inv, source, max(3, repeat // 4)))
    return rows


DRAIN_HEADER = ["planner", "placed", "median ms, build state + plan", "median ms, plan only",
                "waves (2/source, 1/dest)"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=convert.DATA)
    ap.add_argument("--nova-limit", type=int, default=None,
                    help="place only the first N requests with the (slow) Nova-style loop")
    ap.add_argument("--repeat", type=int, default=21)
    args = ap.parse_args()
    convert.DATA = args.data
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, {platform.system()} {platform.release()}\n")
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), args.nova_limit, args.repeat)


def run(tmp: Path, nova_limit: int | None, repeat: int) -> None:
    a_hosts, a_vms = convert.alibaba(tmp / "alibaba")
    print("### Alibaba: place 8,152 pods on 1,523 nodes\n")
    rows, where, slots = place_rows(a_hosts, a_vms, nova_limit, ("stack", "spread"))
    _table(PLACE_HEADER, rows)
    hosts, vms = read_hosts(a_hosts), read_vms(a_vms)
    placed = [PlanVM(**{**v.__dict__, "host": where[v.name], "cells": slots[v.name][0],
                        "devices": slots[v.name][1]}) for v in vms if v.name in where]
    write_json(tmp / "alibaba-inventory.json", hosts, placed)
    inv_f = tmp / "alibaba-inventory.json"
    for what, source in (("the fullest host", fullest(hosts, placed)),
                         ("the host with most VMs", most_vms(placed))):
        n = sum(1 for vm in placed if vm.host == source)
        print(f"### Alibaba: drain planning for {what} ({source}, {n} VMs)\n")
        _table(DRAIN_HEADER, drain_rows(inv_f, source, repeat))
    h_hosts, h_files = convert.huawei(tmp / "huawei")
    for f in h_files:
        print(f"### Huawei {f.stem[4:]}: 1,710 servers, 4,998 requests with rules\n")
        _table(PLACE_HEADER, place_rows(h_hosts, f, nova_limit)[0])
    report, ms = run_capacity(tmp / "alibaba-inventory.json", make_config("spread"))
    print(f"### N+1 capacity report, Alibaba packed placement\n\n{len(report.hosts)} hosts "
          f"checked in {ms:.0f} ms; {len(report.failing)} fail N+1.\n")


if __name__ == "__main__":
    main()
