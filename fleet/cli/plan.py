"""``fleet plan``: offline what-if planning on inventory files, the same engine as live.

In the spirit of Ganeti's htools text backend: no cluster, no Redis, just files (schema
in ``fleet.planfiles``). ``place`` places a stream of VM requests in order, ``drain``
plans the evacuation of one host, ``capacity`` checks N+1 for every host. The ``run_*``
functions are what the commands and the benchmarks (``bench/placement.py``) call.

Exit codes: 0 ok; 1 when a drain plan leaves VMs behind or the fleet fails N+1; 2 bad
input (``InvalidInput``, mapped by ``fleet.cli.main``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fleet.cli.common import JsonOpt, console, print_json, rows_table
from fleet.core.errors import InvalidInput

if TYPE_CHECKING:  # the engine is imported by the commands that use it: a fast CLI start
    from fleet.core.capacity import CapacityReport
    from fleet.core.evacuation import EvacuationPlan
    from fleet.core.placement import Placement
    from fleet.core.planmodel import PlacementConfig

plan_app = typer.Typer(help="What-if planning on inventory files (no cluster needed).",
                       no_args_is_help=True)
CpuRatio = Annotated[float, typer.Option("--cpu-ratio", help="vCPU allocation ratio.")]
RamRatio = Annotated[float, typer.Option("--ram-ratio", help="Memory allocation ratio.")]
Reserved = Annotated[int, typer.Option("--reserved-mib", help="Memory reserved per host.")]


def make_config(policy: str, cpu_ratio: float = 1.0, ram_ratio: float = 1.0,
                reserved_mib: int = 0) -> PlacementConfig:
    """A ``PlacementConfig`` from command-line values (``policy``: spread or stack)."""
    from fleet.core.planmodel import PRESETS, PlacementConfig

    if policy not in PRESETS:
        raise InvalidInput(f"unknown policy {policy!r}: choose {' or '.join(PRESETS)}")
    if cpu_ratio <= 0 or ram_ratio <= 0 or reserved_mib < 0:
        raise InvalidInput("allocation ratios must be > 0 and reserved memory >= 0")
    return PlacementConfig(cpu_allocation_ratio=cpu_ratio, ram_allocation_ratio=ram_ratio,
                           reserved_host_memory_mib=reserved_mib, weights=dict(PRESETS[policy]))


# ------------------------------------------------------------------ the work
def run_place(hosts_file: Path, vms_file: Path, config: PlacementConfig) -> dict[str, Any]:
    """Place the requests of ``vms_file`` (VMs without a host) in order.

    VMs with a ``host`` are taken as already running there.
    """
    from fleet.core.fleetstate import FleetState
    from fleet.core.placement import place_stream
    from fleet.planfiles import read_hosts, read_vms

    hosts, vms = read_hosts(hosts_file), read_vms(vms_file)
    names = {h.name for h in hosts}
    for vm in vms:
        if vm.host and vm.host not in names:
            raise InvalidInput(f"{vms_file}: VM {vm.name!r} runs on unknown host {vm.host!r}")
    requests = [vm for vm in vms if not vm.host]
    t0 = time.perf_counter()
    st = FleetState(hosts, config, [vm for vm in vms if vm.host])
    results: list[Placement] = place_stream(st, requests)
    elapsed = time.perf_counter() - t0
    placed = sum(1 for r in results if r.host)
    return {"requests": len(requests), "placed": placed, "rejected": len(requests) - placed,
            "planning_ms": round(elapsed * 1000, 3), "placements": [r.to_dict() for r in results]}


def run_drain(inventory: Path, host: str, config: PlacementConfig, max_per_source: int = 2,
              max_per_destination: int = 1) -> tuple[EvacuationPlan, float]:
    """The evacuation plan for ``host`` and the planning time in ms (state build included)."""
    from fleet.core.evacuation import plan_evacuation
    from fleet.core.fleetstate import FleetState
    from fleet.planfiles import read_inventory

    inv = read_inventory(inventory)
    t0 = time.perf_counter()
    st = FleetState(inv.hosts, config, inv.vms)
    plan = plan_evacuation(st, [host], max_per_source=max_per_source,
                           max_per_destination=max_per_destination)
    return plan, (time.perf_counter() - t0) * 1000


def run_capacity(inventory: Path, config: PlacementConfig,
                 thorough: bool = False) -> tuple[CapacityReport, float]:
    """The N+1 report and its time in ms."""
    from fleet.core.capacity import n_plus_one
    from fleet.core.fleetstate import FleetState
    from fleet.planfiles import read_inventory

    inv = read_inventory(inventory)
    t0 = time.perf_counter()
    report = n_plus_one(FleetState(inv.hosts, config, inv.vms), thorough)
    return report, (time.perf_counter() - t0) * 1000


# ------------------------------------------------------------------ commands
@plan_app.command("place")
def place_cmd(
    hosts: Annotated[Path, typer.Option("--hosts", help="Hosts file (JSON or CSV).")],
    vms: Annotated[Path, typer.Option("--vms", help="VM requests file (JSON or CSV).")],
    as_json: JsonOpt = False,
    policy: Annotated[str, typer.Option(help="stack (pack, default) or spread.")] = "stack",
    cpu_ratio: CpuRatio = 1.0, ram_ratio: RamRatio = 1.0, reserved_mib: Reserved = 0,
) -> None:
    """Place a stream of VM requests in order: each VM's host or why it was rejected."""
    out = run_place(hosts, vms, make_config(policy, cpu_ratio, ram_ratio, reserved_mib))
    if as_json:
        return print_json(out)
    rejected = [p for p in out["placements"] if not p["host"]]
    if rejected:
        rows_table("rejected", ["vm", "reasons"],
                   [[p["vm"], "; ".join(p["reasons"])] for p in rejected])
    console.print(f"placed {out['placed']} of {out['requests']} requests "
                  f"({out['rejected']} rejected) in {out['planning_ms']:.1f} ms")
    return None


@plan_app.command("drain")
def drain_cmd(
    inventory: Annotated[Path, typer.Option("--inventory", help="Inventory JSON or dir.")],
    host: Annotated[str, typer.Option("--host", help="Host to drain.")],
    as_json: JsonOpt = False,
    policy: Annotated[str, typer.Option(help="spread (default) or stack.")] = "spread",
    max_per_source: Annotated[int, typer.Option(help="Concurrent moves per source.")] = 2,
    max_per_destination: Annotated[int, typer.Option(help="Concurrent moves per dest.")] = 1,
    cpu_ratio: CpuRatio = 1.0, ram_ratio: RamRatio = 1.0, reserved_mib: Reserved = 0,
) -> None:
    """Plan moving every VM off HOST: ordered moves in waves, VMs left behind with reasons."""
    plan, ms = run_drain(inventory, host, make_config(policy, cpu_ratio, ram_ratio,
                                                       reserved_mib),
                         max_per_source, max_per_destination)
    if as_json:
        print_json({**plan.to_dict(), "planning_ms": round(ms, 3)})
    else:
        rows_table(f"drain {host}", ["wave", "vm", "destination", "vcpus", "memory_mib"],
                   [[m.wave, m.vm, m.destination, f"{m.vcpus:g}", m.memory_mib]
                    for m in plan.moves])
        for u in plan.unplaced:
            console.print(f"[red]cannot place {u.vm}[/red]: {'; '.join(u.reasons)}")
        console.print(f"{len(plan.moves)} moves in {plan.waves} waves, {len(plan.unplaced)} "
                      f"VMs left behind ({plan.strategy}, {ms:.1f} ms)")
    if not plan.complete:
        raise typer.Exit(1)


@plan_app.command("capacity")
def capacity_cmd(
    inventory: Annotated[Path, typer.Option("--inventory", help="Inventory JSON or dir.")],
    as_json: JsonOpt = False,
    thorough: Annotated[bool, typer.Option(help="Also try fallback packings.")] = False,
    policy: Annotated[str, typer.Option(help="spread (default) or stack.")] = "spread",
    cpu_ratio: CpuRatio = 1.0, ram_ratio: RamRatio = 1.0, reserved_mib: Reserved = 0,
) -> None:
    """N+1: could each host's VMs be re-placed on the others if it failed?"""
    report, ms = run_capacity(inventory, make_config(policy, cpu_ratio, ram_ratio,
                                                      reserved_mib), thorough)
    if as_json:
        print_json({**report.to_dict(), "planning_ms": round(ms, 3)})
    else:
        failing = [h for h in report.hosts if not h.ok]
        if failing:
            rows_table("hosts failing N+1", ["host", "vms", "stranded"],
                       [[h.host, h.vms, ", ".join(h.stranded)] for h in failing])
        verdict = "holds" if report.ok else f"fails for {len(failing)} hosts"
        console.print(f"N+1 {verdict} ({len(report.hosts)} hosts, {ms:.0f} ms)")
    if not report.ok:
        raise typer.Exit(1)
