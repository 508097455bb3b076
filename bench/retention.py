"""Redis memory under a steady stream of migrations: flat once retention applies.

    python -m bench.retention [--rounds 12] [--round-s 15] [--per-round 100]
                              [--retention-s 60] [--hosts 20] [--vms 200]

Two fleets of ``bench.scale_fleet`` (a private redis-server, sim agents, one controller),
one after the other, run the same rounds: each round submits ``--per-round`` single
migrations, waits for their jobs to end, and samples Redis ``used_memory`` at the end of
the round's ``--round-s`` seconds. The first fleet keeps finished jobs, moves, events
and task results for ``--retention-s`` (the controller's sweep prunes them every
second); the second, the baseline, keeps them for the default 7 days. It prints a
Markdown table: MiB after each round for both, and the growth per 1,000 moves over the
rounds after the retention period.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench.scale_fleet import Fleet, Shape, start_fleet, wait_jobs
from tasks.submit import submit_migration

MIB = 1024 * 1024
KEPT_DEFAULT_S = 7 * 86400


def rounds(fleet: Fleet, opts: argparse.Namespace) -> list[float]:
    """Used memory (MiB) at the end of each round."""
    names = sorted(vm.name for vm in fleet.store.list_vms())
    sizes: list[float] = []
    for r in range(opts.rounds):
        started = time.monotonic()
        picked = [names[(r * opts.per_round + i) % len(names)] for i in range(opts.per_round)]
        ids = [submit_migration(fleet.store, name, None, requested_by="bench")[0]
               for name in picked]
        jobs = wait_jobs(fleet.store, ids, opts.round_s * 4)
        failed = sum(1 for j in jobs.values() if j.state != "succeeded")
        time.sleep(max(0.0, opts.round_s - (time.monotonic() - started)))
        sizes.append(fleet.used_memory() / MIB)
        print(f"  round {r + 1}: {sizes[-1]:.2f} MiB ({failed} jobs not succeeded)",
              file=sys.stderr, flush=True)
    return sizes


def biggest_keys(fleet: Fleet, count: int = 4) -> str:
    """The ``count`` keys that hold the most memory, with their sizes (what still grows)."""
    r = fleet.store.r
    sizes = [(int(r.memory_usage(k) or 0), k) for k in r.scan_iter(count=1000)]
    top = sorted(sizes, reverse=True)[:count]
    return ", ".join(f"{k.split(':', 1)[-1]} {b / MIB:.2f} MiB" for b, k in top)


def run(opts: argparse.Namespace, retention_s: float, log_dir: Path) -> tuple[list[float], str]:
    """MiB after each round, and the biggest keys at the end."""
    shape = Shape(opts.hosts, opts.vms, agents=2, controllers=1)
    fleet = start_fleet(log_dir, shape, {"FLEET_RETENTION_S": str(retention_s),
                                         "FLEET_RECONCILE_INTERVAL_S": "1"})
    try:
        return rounds(fleet, opts), biggest_keys(fleet)
    finally:
        fleet.stop()


def growth_per_1000(sizes: list[float], first: int, per_round: int) -> float:
    """MiB per 1,000 moves between round ``first`` (0-based) and the last."""
    moves = (len(sizes) - 1 - first) * per_round
    return 1000 * (sizes[-1] - sizes[first]) / moves if moves > 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--round-s", type=float, default=15.0)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--retention-s", type=float, default=60.0)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--vms", type=int, default=200)
    opts = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="fleet-retention-"))
    print(f"retention {opts.retention_s:.0f} s", file=sys.stderr)
    kept, kept_keys = run(opts, opts.retention_s, log_dir / "retention")
    print("baseline: 7 days", file=sys.stderr)
    base, base_keys = run(opts, KEPT_DEFAULT_S, log_dir / "baseline")
    print(f"Command: `python -m bench.retention {' '.join(sys.argv[1:])}`\n")
    print(f"| round | moves so far | MiB, retention {opts.retention_s:.0f} s |"
          " MiB, retention 7 days |\n| --- | --- | --- | --- |")
    for i, (a, b) in enumerate(zip(kept, base, strict=True)):
        print(f"| {i + 1} | {(i + 1) * opts.per_round:,} | {a:.2f} | {b:.2f} |")
    settled = min(len(kept) - 1, int(opts.retention_s / opts.round_s) + 1)
    print(f"\nMiB per 1,000 moves from round {settled + 1} on: retention"
          f" {growth_per_1000(kept, settled, opts.per_round):.2f}, baseline"
          f" {growth_per_1000(base, settled, opts.per_round):.2f}")
    print(f"\nBiggest keys at the end: retention {kept_keys}; baseline {base_keys}")
    print(f"process logs kept in {log_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
