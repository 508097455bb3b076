"""Control-plane benchmark: drains, single migrations and Celery round trips on a
simulated fleet with real Redis and real Celery workers, and what they cost.

    python -m bench.scale [--hosts 200] [--vms 1000] [--big-vms 10000] [--controllers 1,2]
                          [--drain-fraction 0.1] [--migrations 200] [--noop 2000] [--quick]

For each number of controllers and each fleet size (``--vms``, then ``--big-vms``) it
starts a fresh fleet (``bench.scale_fleet``): a private redis-server, sim agents
(``fleet agent --hosts ... --driver sim``, ``FLEET_SIM_SPEED=100``) and controllers
(``fleet controller``) in their own processes, hosts and VMs seeded round robin. A few
single migrations warm the controllers' placement state, then it measures:

1. a drain of ``--drain-fraction`` of the hosts as one job (``submit_drain``): moves/s
   from submission to the job's end (the job's own ``finished_at``);
2. ``--migrations`` single-migration jobs submitted at once (first size only);
3. ``--noop`` ``celery.accumulate`` round trips through the control queue, all in flight
   (first size only);
4. CPU (``/proc/<pid>/stat``) of the controllers, the agents, redis-server and this
   process: per move, and as cores busy per phase (also 3 s idle before the drain);
5. the longest gap between two heartbeats of one host, sampled every 0.1 s;
6. Redis ``used_memory`` before and after seeding, once ready, after the moves.

Where the time goes: moves in flight on average (Little's law), dispatches per second,
messages left in the control queue when the drain ended, and the controllers' tasks
(count and busy seconds, from their Celery logs).

It prints one Markdown table per number of controllers, with the issue's floors beside.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.scale_fleet import (
    TIMES,
    Fleet,
    HeartbeatWatch,
    Phase,
    Shape,
    drain_phase,
    idle_phase,
    migrations_phase,
    noop_phase,
    start_fleet,
    warm_up,
)

IDLE_S = 3.0
TASK_DONE = re.compile(r"Task ([\w.]+)\[[^]]+\] succeeded in ([0-9.]+)s")
CORES = "controllers / agents / redis-server / bench"
FLOOR_MOVES_S, FLOOR_MIGRATIONS_S, FLOOR_CPU_RATIO, FLOOR_GAP_S = 200.0, 100.0, 1.5, 1.5


@dataclass
class Run:
    """Everything measured on one fleet."""

    shape: Shape
    drain: Phase | None = None
    idle: Phase | None = None
    migrations: Phase | None = None
    noop: Phase | None = None
    memory: dict[str, int] = field(default_factory=dict)
    seed_s: float = 0.0
    gap: tuple[float, str, str] = (0.0, "", "")
    log_errors: Counter[str] = field(default_factory=Counter)
    tasks: str = ""
    error: str = ""


def run_fleet(shape: Shape, opts: argparse.Namespace, first: bool, log_dir: Path) -> Run:
    """Start a fleet of ``shape``, measure its phases, stop it (always)."""
    run = Run(shape)
    _say(f"fleet: {shape.hosts} hosts, {shape.vms} VMs, {shape.agents} agents,"
         f" {shape.controllers} controller(s); logs in {log_dir}")
    try:
        fleet = start_fleet(log_dir, shape)  # stops what it started if it fails
    except Exception as exc:
        run.error = f"could not start: {type(exc).__name__}: {exc}"
        _say(f"  {run.error}")
        return run
    watch = HeartbeatWatch(fleet.store, fleet.names)
    try:
        run.seed_s = fleet.seed_s
        watch.start()
        _measure(fleet, watch, run, opts, first)
    except Exception as exc:  # keep the other fleets' results; say what broke
        run.error = f"{type(exc).__name__}: {exc}"
        _say(f"  failed: {run.error}")
    finally:
        gap = watch.finish()
        run.gap = (gap.seconds, gap.host, gap.phase)
        fleet.stop()
        run.memory = dict(fleet.memory)
        run.log_errors, run.tasks = log_errors(log_dir), controller_tasks(log_dir)
    return run


def _measure(fleet: Fleet, watch: HeartbeatWatch, run: Run, opts: argparse.Namespace,
             first: bool) -> None:
    watch.phase = "warm-up"
    warm_up(fleet, opts.timeout)
    fleet.memory["ready"] = fleet.used_memory()
    watch.phase = "idle"
    run.idle = idle_phase(fleet, IDLE_S)
    watch.phase = "drain"
    run.drain = drain_phase(fleet, opts.drain_fraction, opts.drain_concurrency, opts.timeout)
    _say(f"  drain: {run.drain.done} moves in {run.drain.seconds:.1f} s")
    if first and opts.migrations:
        watch.phase = "migrations"
        run.migrations = migrations_phase(fleet, opts.migrations, opts.timeout)
        _say(f"  migrations: {run.migrations.done} in {run.migrations.seconds:.1f} s")
    fleet.memory["after the moves"] = fleet.used_memory()
    if first and opts.noop:
        watch.phase = "no-op"
        run.noop = noop_phase(fleet, opts.noop, opts.timeout)
        _say(f"  no-op: {run.noop.done} in {run.noop.seconds:.1f} s")
    watch.phase = "end"


def log_errors(log_dir: Path) -> Counter[str]:
    """ERROR and CRITICAL lines of the processes' logs, by their message's start."""
    found: Counter[str] = Counter()
    for log in sorted(log_dir.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if " ERROR" in line or " CRITICAL" in line or line.startswith("Traceback"):
                found[f"{log.stem}: {line.split(']', 1)[-1].strip()[:120]}"] += 1
    return found


def controller_tasks(log_dir: Path) -> str:
    """Per task name, how many the controllers ran and the seconds they took in all
    (Celery's ``Task NAME[id] succeeded in Ns`` lines)."""
    count: Counter[str] = Counter()
    busy: dict[str, float] = {}
    for log in sorted(log_dir.glob("controller-*.log")):
        for found in TASK_DONE.finditer(log.read_text(errors="replace")):
            name = found.group(1).rsplit(".", 1)[-1]
            count[name] += 1
            busy[name] = busy.get(name, 0.0) + float(found.group(2))
    return "; ".join(f"{n} {count[n]:,} / {busy[n]:.1f}" for n in sorted(count))


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Row:
    """One line of a report table: a cell per fleet size (given that run and the first
    one, for ratios), and the issue's floor with a verdict per size."""

    label: str
    cell: Callable[[Run, Run], str]
    floor: str = ""
    ok: Callable[[Run, Run], bool | None] | None = None


def _num(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"  # NaN: nothing to divide by


def _phase(get: Callable[[Run], Phase | None], show: Callable[[Phase], str],
           ) -> Callable[[Run, Run], str]:
    def cell(run: Run, _: Run) -> str:
        phase = get(run)
        return "-" if phase is None else show(phase)
    return cell


def _rate_ok(get: Callable[[Run], Phase | None], floor: float,
             ) -> Callable[[Run, Run], bool | None]:
    def ok(run: Run, _: Run) -> bool | None:
        phase = get(run)
        return None if phase is None else phase.rate >= floor
    return ok


def _drain(run: Run) -> Phase | None:
    return run.drain


def _idle(run: Run) -> Phase | None:
    return run.idle


def _migrations(run: Run) -> Phase | None:
    return run.migrations


def _noop(run: Run) -> Phase | None:
    return run.noop


def _ctl_ms(run: Run) -> float:
    return run.drain.ms_per(run.drain.cpu.controllers) if run.drain else float("nan")


def _ctl_cell(run: Run, base: Run) -> str:
    if run is base:
        return _num(_ctl_ms(run), 2)
    return f"{_num(_ctl_ms(run), 2)} ({_num(_ctl_ms(run) / _ctl_ms(base), 2)}{TIMES} of first)"


def _ctl_ok(run: Run, base: Run) -> bool | None:
    return None if run is base else _ctl_ms(run) / _ctl_ms(base) <= FLOOR_CPU_RATIO


def _mib(run: Run) -> str:
    return " / ".join(f"{run.memory[k] / 2**20:,.1f}" if k in run.memory else "-"
                      for k in ("before seeding", "after seeding", "ready", "after the moves"))


def _bytes_per_move(run: Run, _: Run) -> str:
    moves = sum(p.done for p in (run.drain, run.migrations) if p is not None)
    mem = run.memory
    if not moves or "after the moves" not in mem:
        return "-"
    return f"{(mem['after the moves'] - mem['ready']) / moves:,.0f}"


def _bytes_per_vm(run: Run, _: Run) -> str:
    seeded = run.memory.get("after seeding", 0) - run.memory.get("before seeding", 0)
    return f"{seeded / run.shape.vms:,.0f}" if run.shape.vms else "-"


def _note(get: Callable[[Run], Phase | None], *keys: str) -> Callable[[Run, Run], str]:
    return _phase(get, lambda p: " / ".join(p.notes.get(k, "-") for k in keys))


ROWS = [
    Row("fleet", lambda r, _: f"{r.shape.hosts} hosts, {r.shape.vms:,} VMs,"
        f" {r.shape.agents} agent processes"),
    Row("seeding s (create_vm, one by one)", lambda r, _: f"{r.seed_s:.1f}"),
    Row(f"idle ({IDLE_S:.0f} s before the drain): cores busy, {CORES}",
        _phase(_idle, lambda p: p.cpu.cores())),
    Row("drain: hosts / job", _note(_drain, "hosts", "job")),
    Row("drain: moves done / not done", _phase(_drain, lambda p: f"{p.done} / {p.failed}")),
    Row("drain: s (submission → job end)", _phase(_drain, lambda p: f"{p.seconds:.2f}")),
    Row("drain: submit s / plan ms", _note(_drain, "submit s", "plan ms")),
    Row("drain: **moves/s**", _phase(_drain, lambda p: _num(p.rate)), "≥ 200",
        _rate_ok(_drain, FLOOR_MOVES_S)),
    Row("drain: median s dispatch → claimed / claimed → done",
        _note(_drain, "claim wait s", "run s")),
    Row("drain: mean moves in flight / dispatched per s", _note(_drain, "in flight",
                                                                  "dispatch/s")),
    Row("drain: control-queue messages left at the job's end", _note(_drain, "backlog")),
    Row(f"drain: cores busy, {CORES}", _phase(_drain, lambda p: p.cpu.cores())),
    Row("drain: moves not done, why", _note(_drain, "move errors")),
    Row("drain: **controller CPU ms per move**", _ctl_cell,
        f"≤ {FLOOR_CPU_RATIO}{TIMES} of first size", _ctl_ok),
    Row("drain: agents / redis-server CPU ms per move",
        _phase(_drain, lambda p: f"{_num(p.ms_per(p.cpu.agents), 2)} /"
               f" {_num(p.ms_per(p.cpu.redis), 2)}")),
    Row("migrations: jobs succeeded / not", _phase(_migrations,
                                                   lambda p: f"{p.done} / {p.failed}")),
    Row("migrations: s (first submission → last job end) / submit s",
        _phase(_migrations, lambda p: f"{p.seconds:.2f} / {p.notes['submit s']}")),
    Row("migrations: **migrations/s**", _phase(_migrations, lambda p: _num(p.rate)), "≥ 100",
        _rate_ok(_migrations, FLOOR_MIGRATIONS_S)),
    Row("migrations: median s dispatch → claimed / claimed → done",
        _note(_migrations, "claim wait s", "run s")),
    Row("migrations: mean moves in flight / dispatched per s",
        _note(_migrations, "in flight", "dispatch/s")),
    Row(f"migrations: cores busy, {CORES}", _phase(_migrations, lambda p: p.cpu.cores())),
    Row("migrations: controller / agents CPU ms per migration",
        _phase(_migrations, lambda p: f"{_num(p.ms_per(p.cpu.controllers), 2)} /"
               f" {_num(p.ms_per(p.cpu.agents), 2)}")),
    Row("no-op: tasks / s (send s)", _phase(_noop, lambda p: f"{p.done:,} / {p.seconds:.2f}"
                                            f" ({p.notes['send s']})")),
    Row("no-op: **round trips/s**", _phase(_noop, lambda p: _num(p.rate))),
    Row(f"no-op: cores busy, {CORES}", _phase(_noop, lambda p: p.cpu.cores())),
    Row("no-op: controller CPU ms per task", _phase(_noop,
                                                    lambda p: _num(p.ms_per(p.cpu.controllers),
                                                                   2))),
    Row("**longest heartbeat gap** s (host, phase)",
        lambda r, _: f"{r.gap[0]:.2f} ({r.gap[1] or '-'}, {r.gap[2] or '-'})", "≤ 1.5 s",
        lambda r, _: r.gap[0] <= FLOOR_GAP_S if r.gap[1] else None),
    Row("Redis used_memory MiB: empty / seeded / ready / after the moves", lambda r, _: _mib(r)),
    Row("Redis bytes per VM seeded / per move", lambda r, b: f"{_bytes_per_vm(r, b)} /"
        f" {_bytes_per_move(r, b)}"),
    Row("controller tasks over the run: count / busy s (log)", lambda r, _: r.tasks or "-"),
    Row("ERROR lines in process logs", lambda r, _: str(sum(r.log_errors.values()))),
]


def table(runs: list[Run]) -> str:
    base = runs[0]
    head = ["metric", *(f"{r.shape.vms:,} VMs" for r in runs), "floor", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in ROWS:
        cells = [row.cell(r, base) for r in runs]
        verdicts = [row.ok(r, base) if row.ok else None for r in runs]
        verdict = " / ".join("-" if v is None else "met" if v else "**missed**"
                             for v in verdicts) if row.ok else ""
        lines.append("| " + " | ".join([row.label, *cells, row.floor, verdict]) + " |")
    return "\n".join(lines)


def machine() -> str:
    """Cores, CPU model, memory and load, from /proc."""
    import os

    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), "unknown CPU")
    meminfo = Path("/proc/meminfo").read_text().split()
    total_gib = int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores ({model}), {total_gib:.0f} GiB, load average {load}"


def report(command: str, runs: dict[int, list[Run]], started: str, took_s: float) -> str:
    parts = [f"Command: `{command}`", "", f"Machine at start: {started}", "",
             f"Machine at end: {machine()}; {took_s:.0f} s in all", ""]
    for controllers, group in runs.items():
        parts += [f"### {controllers} controller{'s' if controllers > 1 else ''}", "",
                  table(group), ""]
        parts += [f"Fleet of {r.shape.vms:,} VMs stopped early: {r.error}"
                  for r in group if r.error]
        errors = Counter[str]()
        for r in group:
            errors.update(r.log_errors)
        if errors:
            parts += ["", "Most frequent ERROR lines in the process logs:", ""]
            parts += [f"- {n}{TIMES} `{line}`" for line, n in errors.most_common(8)]
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split(
        "\n")[0])
    p.add_argument("--hosts", type=int, default=200)
    p.add_argument("--vms", type=int, default=1000, help="first fleet size (all phases)")
    p.add_argument("--big-vms", type=int, default=10000, help="second size (drain only; 0: none)")
    p.add_argument("--drain-fraction", type=float, default=0.1)
    p.add_argument("--drain-concurrency", type=int, default=8, help="moves at once per drained"
                   " host (the job's concurrency is this times the drained hosts)")
    p.add_argument("--migrations", type=int, default=200)
    p.add_argument("--noop", type=int, default=2000)
    p.add_argument("--controllers", default="1,2", help="comma-separated: one run per count")
    p.add_argument("--agents", type=int, default=8, help="sim agent processes sharing the hosts")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per phase at most")
    p.add_argument("--quick", action="store_true", help="a small run (< 1 minute): 20 hosts,"
                   " 100 and 400 VMs, 2 agents, 20 migrations, 200 no-ops")
    opts = p.parse_args(argv)
    if opts.quick:
        opts.hosts, opts.vms, opts.big_vms, opts.agents = 20, 100, 400, 2
        opts.migrations, opts.noop, opts.timeout = 20, 200, 60.0
    opts.controllers = [int(c) for c in str(opts.controllers).split(",") if c]
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    opts = options(args)
    started, clock = machine(), time.monotonic()
    log_root = Path(tempfile.mkdtemp(prefix="fleet-scale-"))
    runs: dict[int, list[Run]] = {}
    for controllers in opts.controllers:
        for i, vms in enumerate(v for v in (opts.vms, opts.big_vms) if v):
            shape = Shape(opts.hosts, vms, min(opts.agents, opts.hosts), controllers)
            log_dir = log_root / f"c{controllers}-v{vms}"
            log_dir.mkdir()
            runs.setdefault(controllers, []).append(run_fleet(shape, opts, i == 0, log_dir))
    command = shlex.join(["python", "-m", "bench.scale", *args])
    print(report(command, runs, started, time.monotonic() - clock))
    _say(f"process logs kept in {log_root}")
    return 0 if all(not r.error for group in runs.values() for r in group) else 1


if __name__ == "__main__":
    sys.exit(main())
