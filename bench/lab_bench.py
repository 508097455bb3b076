"""Lab benchmarks on real QEMU: fleet migrations and a drain against plain
``virsh migrate``, failover time from power loss to every HA VM running elsewhere
(defaults), and the VM guard's restart of a guest whose QEMU died, against ``virsh start`` alone.

    sudo python -m bench.lab_bench [--runs 5] [--drains 3] [--failovers 3] [--guards 3]

Builds its own 3-host lab (own directory, bridge, subnet and ports), prints Markdown
tables for BENCHMARKS.md, and takes the lab down at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from fleet.lab import lab
from fleet.lab.config import LabConfig
from fleet.lab.guests import create_lab_vm, qemu_pids, remove_all_guests
from fleet.lab.procs import wait_until
from fleet.lab.services import lab_store
from fleet.lab.virsh import running_on

BENCH_LAB = {"root": "/var/lib/fleet-lab-bench", "hosts": 3, "bridge": "flbbr0",
             "subnet": "10.77.8", "redis_port": 6398, "prefix": "bench",
             "netns_prefix": "flb-", "veth_prefix": "flb-", "flower_port": 5598}


def fleet_command() -> list[str]:
    """The ``fleet`` command as operators run it: the console script beside this
    interpreter (``python -m fleet.cli.main`` where it is not installed)."""
    script = Path(sys.executable).with_name("fleet")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fleet.cli.main"]


def fleet(*args: str) -> None:
    done = subprocess.run([*fleet_command(), *args], env=dict(os.environ),
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise SystemExit(f"fleet {' '.join(args)} failed: {done.stderr.strip()[-500:]}")


def virsh(cfg: LabConfig, host: str, *args: str) -> str:
    done = subprocess.run(["virsh", "-c", cfg.uri(host), *args], capture_output=True,
                          text=True, timeout=300, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def bench_migrations(cfg: LabConfig, runs: int) -> list[str]:
    """Each run migrates one guest h1→h2 through fleet, then h2→h1 with virsh."""
    rows = []
    for kind, os_guest in (("tiny, 64 MiB, no OS", False), ("Linux, 256 MiB, TCG", True)):
        name = "bm-os" if os_guest else "bm-tiny"
        create_lab_vm(cfg, name, "h1", os_guest=os_guest, dirty_mib_s=4)
        if os_guest:
            fleet("vm", "policy", name, "--bandwidth-mib-s", "64")
            time.sleep(8)
        through_fleet, through_virsh = [], []
        limit = ["--bandwidth", "64"] if os_guest else []
        by_fleet = ("vm", "migrate", name, "--to", "h2", "--wait")
        by_virsh = ("migrate", "--live", "--p2p", "--persistent", "--undefinesource", *limit,
                    name, cfg.uri("h1"))
        for _ in range(runs):
            through_fleet.append(timed(partial(fleet, *by_fleet)))
            through_virsh.append(timed(partial(virsh, cfg, "h2", *by_virsh)))
            lab_store(cfg).update_vm(name, host="h1")
        f, v = statistics.median(through_fleet), statistics.median(through_virsh)
        rows.append(f"| {kind} | {runs} | {f:.2f} | {v:.2f} | {f / v:.2f} |")
    return rows


DRAIN_GUESTS, DRAIN_CONCURRENCY = 8, 2


def _virsh_moves(cfg: LabConfig, moves: list[tuple[str, str, str]], at_once: int) -> None:
    """``virsh migrate --live --p2p`` of (guest, source, destination) moves, ``at_once``
    at a time in the given order, then the store told where each guest went."""
    def one(move: tuple[str, str, str]) -> None:
        name, source, dest = move
        if not virsh(cfg, source, "migrate", "--live", "--p2p", "--persistent",
                     "--undefinesource", name, cfg.uri(dest)) and running_on(cfg, name) != [dest]:
            raise SystemExit(f"virsh migrate {name} {source} -> {dest} failed")

    with ThreadPoolExecutor(at_once) as pool:
        list(pool.map(one, moves))
    store = lab_store(cfg)
    for name, _, dest in moves:
        store.update_vm(name, host=dest)


def bench_drain(cfg: LabConfig, runs: int) -> tuple[list[float], list[float], list[float]]:
    """Each run drains h1 of 8 tiny guests with ``fleet host drain h1 --concurrency 2
    --wait``, then (guests back on h1, untimed) moves the same guests to the same
    destinations, in fleet's order, with ``virsh migrate``, 2 at a time. Also the drain
    job's own time (created → finished), without the CLI's start and end. One more run
    first, not counted, warms both up (guests just booted, first connections)."""
    remove_all_guests(cfg)
    names = [f"bd-{i}" for i in range(DRAIN_GUESTS)]
    for name in names:
        create_lab_vm(cfg, name, "h1")
    by_fleet, by_job, by_virsh = [], [], []
    store = lab_store(cfg)
    for run in range(runs + 1):  # run 0 warms up: new guests, first connections
        took = timed(partial(fleet, "host", "drain", "h1", "--concurrency",
                             str(DRAIN_CONCURRENCY), "--wait"))
        fleet("host", "activate", "h1")
        job = store.drain_job("h1")
        order = [m.vm for m in store.job_moves(job)] if job else names
        placed = [(n, "h1", store.get_vm(n).host) for n in order]
        _virsh_moves(cfg, [(n, dest, "h1") for n, _, dest in placed], DRAIN_CONCURRENCY)
        bare = timed(partial(_virsh_moves, cfg, placed, DRAIN_CONCURRENCY))
        _virsh_moves(cfg, [(n, dest, "h1") for n, _, dest in placed], DRAIN_CONCURRENCY)
        if run and job is not None:
            by_fleet.append(took)
            by_job.append(job.finished_at - job.created_at)
            by_virsh.append(bare)
    remove_all_guests(cfg)
    return by_fleet, by_job, by_virsh


def drain_row(cli: list[float], job: list[float], bare: list[float]) -> str:
    def runs(values: list[float]) -> str:
        each = ", ".join(f"{t:.2f}" for t in values)
        return f"median {statistics.median(values):.2f} s (runs {each})"

    f, j, v = (statistics.median(x) for x in (cli, job, bare))
    return (f"\ndrain of {DRAIN_GUESTS} tiny guests, {DRAIN_CONCURRENCY} at once, {len(cli)} runs:"
            f" fleet host drain --wait {runs(cli)}, its job alone {runs(job)}; virsh migrate,"
            f" same guests, destinations and order, {runs(bare)}; ratio {f / v:.2f}"
            f" (job alone {j / v:.2f})")


def bench_failover(cfg: LabConfig, runs: int) -> list[float]:
    """Power loss of h3 holding 3 HA VMs → all running elsewhere, at default thresholds."""
    store = lab_store(cfg)
    took = []
    for run in range(runs):
        remove_all_guests(cfg)  # every run starts from empty hosts: no capacity runs out
        names = [f"bf{run}-{i}" for i in range(3)]
        for name in names:
            create_lab_vm(cfg, name, "h3", ha=True)
        started = time.monotonic()
        fleet("lab", "kill", "h3")
        wait_until(lambda n=names: all(len(running_on(cfg, x)) == 1 for x in n), 120.0,
                   "HA VMs elsewhere", interval_s=0.1)
        took.append(time.monotonic() - started)
        lab.up(cfg, agents=True, install=False)
        wait_until(lambda: store.get_host("h3").state == "recovered"
                   and store.heartbeat("h3") is not None, 120.0, "h3 back")
        fleet("host", "activate", "h3")
        wait_until(lambda: store.get_host("h3").state == "active", 60.0, "h3 active")
    return took


def _kill_qemu(cfg: LabConfig, name: str) -> list[int]:
    """SIGKILL the QEMU of lab guest ``name`` on h1 (a process the lab started)."""
    pids = qemu_pids(cfg, "h1", name)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


def _restarted(cfg: LabConfig, name: str, old: list[int]) -> bool:
    """A new QEMU runs guest ``name`` on h1 (libvirt may still say running for a moment
    after the old one was killed, with no QEMU left at all)."""
    new = set(qemu_pids(cfg, "h1", name))
    return bool(new) and not new & set(old) and running_on(cfg, name) == ["h1"]


def bench_guard(cfg: LabConfig, runs: int) -> tuple[list[float], list[float]]:
    """A guest's QEMU killed on a healthy host. fleet: the VM guard starts the HA guest
    again by itself (kill → running; a new guest each run, so no restart limit is near).
    Baseline, same run: a non-HA guest killed the same way, then ``virsh start`` once
    libvirt reports it shut off (the start alone, nothing to notice it)."""
    remove_all_guests(cfg)
    create_lab_vm(cfg, "bg-plain", "h1")
    by_guard, by_virsh = [], []
    for run in range(runs):
        name = f"bg-ha-{run}"
        create_lab_vm(cfg, name, "h1", ha=True)
        time.sleep(2)  # a heartbeat or two reports it running before it dies
        old = _kill_qemu(cfg, name)
        started = time.monotonic()
        wait_until(lambda n=name, o=old: _restarted(cfg, n, o), 120.0,
                   "the HA guest running again", interval_s=0.05)
        by_guard.append(time.monotonic() - started)
        _kill_qemu(cfg, "bg-plain")
        wait_until(lambda: virsh(cfg, "h1", "domstate", "bg-plain") == "shut off", 30.0,
                   "bg-plain shut off", interval_s=0.05)
        by_virsh.append(timed(partial(virsh, cfg, "h1", "start", "bg-plain")))
    return by_guard, by_virsh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--drains", type=int, default=3)
    parser.add_argument("--failovers", type=int, default=3)
    parser.add_argument("--guards", type=int, default=3)
    args = parser.parse_args()
    cfg = LabConfig(**BENCH_LAB)  # type: ignore[arg-type]
    lab.down(cfg.path, expected=cfg)
    os.environ.update(cfg.client_env())
    try:
        lab.up(cfg, agents=True, install=True)
        store = lab_store(cfg)
        wait_until(lambda: all(store.heartbeat(h) for h in cfg.host_names()), 60.0, "agents")
        print("| guest | runs | fleet vm migrate --wait, median s | virsh migrate --p2p,"
              " median s | ratio |\n| --- | --- | --- | --- | --- |")
        print("\n".join(bench_migrations(cfg, args.runs)))
        print(drain_row(*bench_drain(cfg, args.drains)))
        took = bench_failover(cfg, args.failovers)
        print(f"\nfailover (power loss → 3 HA VMs running elsewhere), {len(took)} runs: "
              f"median {statistics.median(took):.2f} s, runs "
              f"{', '.join(f'{t:.2f}' for t in took)}")
        guard, bare = bench_guard(cfg, args.guards)
        print(f"\nVM guard (QEMU killed → running again on its host), {len(guard)} runs: "
              f"median {statistics.median(guard):.2f} s, runs "
              f"{', '.join(f'{t:.2f}' for t in guard)}; baseline virsh start alone: "
              f"median {statistics.median(bare):.2f} s")
    finally:
        lab.down(cfg.path, expected=cfg)


if __name__ == "__main__":
    main()
