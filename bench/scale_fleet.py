"""The fleet under test of ``bench.scale`` and its measured phases: a private
redis-server, sim agents and controllers in their own processes, seeded hosts and VMs,
the probes the benchmark reads (process CPU, Redis memory, heartbeat gaps, job ends), and
the phases it times (a drain, single migrations, Celery no-op round trips).

Only processes started here are stopped (by their ``Popen``), in ``Fleet.stop``.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen

from fleet.cli.processes import Processes, wait_for
from fleet.core.models import VM, Host, Job, Move, MoveState
from fleet.settings import load_settings
from fleet.store import Store
from fleet.store.records import load
from workers.signing import generate

HOST_VCPUS, HOST_MEMORY_MIB = 64, 262144
VM_MEMORY_MIB = (512, 1024, 1536, 2048)
VM_DIRTY_MIB_S = 1.0  # low: every pre-copy converges in its first pass
SIM_SPEED = "100"
READY_TIMEOUT_S = 180.0
WARM_UP_PER_CONTROLLER = 2
TIMES = "\N{MULTIPLICATION SIGN}"


@dataclass(frozen=True)
class Shape:
    """What one fleet run starts: hosts, VMs, agent and controller processes."""

    hosts: int
    vms: int
    agents: int
    controllers: int


@dataclass
class Fleet:
    """A running fleet: its processes, store and Redis, under a fresh prefix."""

    procs: Processes
    store: Store
    url: str
    names: list[str]
    redis: Popen[bytes]
    agents: list[Popen[bytes]] = field(default_factory=list)
    controllers: list[Popen[bytes]] = field(default_factory=list)
    memory: dict[str, int] = field(default_factory=dict)
    seed_s: float = 0.0

    def used_memory(self) -> int:
        return int(self.store.r.info("memory")["used_memory"])

    def stop(self) -> None:
        self.procs.stop_all()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of process ``pid`` so far (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_fleet(log_dir: Path, shape: Shape, settings: dict[str, str] | None = None) -> Fleet:
    """A private Redis, then seeded hosts and VMs, then the agents and controllers, ready.

    This process's Celery app is pointed at the new Redis and prefix (``reconfigure``),
    so tasks it sends reach this fleet's workers. ``settings`` are more ``FLEET_*``
    variables for every process.
    """
    procs = Processes(log_dir)
    try:
        url = procs.start_redis()
        redis_proc = procs.named(f"redis-{url.rsplit(':', 1)[1].split('/')[0]}")
        env = {"FLEET_REDIS_URL": url, "FLEET_PREFIX": f"bench-scale-{uuid.uuid4().hex[:8]}",
               "FLEET_SIM_SPEED": SIM_SPEED,
               "FLEET_KEYS_DIR": os.environ.get("FLEET_KEYS_DIR") or str(log_dir / "keys"),
               **(settings or {})}
        generate(env["FLEET_KEYS_DIR"])
        os.environ.update(env)
        from tasks.app import reconfigure

        reconfigure(load_settings())
        names = [f"h{i}" for i in range(1, shape.hosts + 1)]
        fleet = Fleet(procs, Store.connect(url, env["FLEET_PREFIX"]), url, names, redis_proc)
        fleet.memory["before seeding"] = fleet.used_memory()
        started = time.monotonic()
        seed(fleet.store, names, shape.vms)
        fleet.seed_s = time.monotonic() - started
        fleet.memory["after seeding"] = fleet.used_memory()
        _spawn(fleet, env, shape)
        _wait_ready(fleet, shape)
        return fleet
    except BaseException:
        procs.stop_all()
        raise


def seed(store: Store, names: list[str], vms: int) -> None:
    """``names`` sim hosts of 64 vCPUs / 256 GiB and ``vms`` small guests round robin,
    started and recorded the way ``fleet demo`` does it (``create_vm``)."""
    from workers.hypervisors.sim import SimHypervisor
    from workers.inventory import create_vm

    for name in names:
        store.put_host(Host(name, vcpus=HOST_VCPUS, memory_mib=HOST_MEMORY_MIB, driver="sim"))
    hvs = [SimHypervisor(store.r, store.keys, name) for name in names]
    for i in range(vms):
        hv = hvs[i % len(hvs)]
        memory = VM_MEMORY_MIB[(i // len(hvs)) % len(VM_MEMORY_MIB)]
        create_vm(store, hv, VM(f"vm-{i + 1:05d}", str(uuid.uuid4()), hv.host, 1, memory,
                                dirty_mib_s=VM_DIRTY_MIB_S))


def _spawn(fleet: Fleet, env: dict[str, str], shape: Shape) -> None:
    per_agent = -(-len(fleet.names) // shape.agents)
    for i in range(0, len(fleet.names), per_agent):
        group = fleet.names[i:i + per_agent]
        fleet.agents.append(fleet.procs.fleet(
            f"agent-{group[0]}", ["agent", "--hosts", ",".join(group), "--driver", "sim",
                                  "--vcpus", str(HOST_VCPUS),
                                  "--memory-mib", str(HOST_MEMORY_MIB)], env))
    for i in range(shape.controllers):
        fleet.controllers.append(fleet.procs.fleet(f"controller-{i + 1}", ["controller"], env))


def _wait_ready(fleet: Fleet, shape: Shape) -> None:
    """Every host beats and every worker (agents, controllers) answers a ping."""
    from tasks.app import app

    store = fleet.store
    workers = len(fleet.agents) + shape.controllers
    wait_for(lambda: all(store.heartbeat(n) for n in fleet.names), READY_TIMEOUT_S,
             "every host's heartbeat")

    def answered() -> bool:
        for name, proc in fleet.procs.children:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see its log")
        return len(app.control.ping(timeout=1.0) or []) >= workers

    wait_for(answered, READY_TIMEOUT_S, f"{workers} Celery workers to answer a ping", 0.5)


def wait_jobs(store: Store, job_ids: list[str], timeout_s: float, step_s: float = 0.1,
              ) -> dict[str, Job]:
    """The jobs once every one is terminal, or as they are when ``timeout_s`` ran out;
    one MGET of the unfinished ones per round, so watching costs the fleet little."""
    jobs: dict[str, Job] = {}
    pending, deadline = list(job_ids), time.monotonic() + timeout_s
    while True:
        raws = store.r.mget([store.keys.job(j) for j in pending])
        for job_id, raw in zip(pending, raws, strict=True):
            job = load(Job, raw)
            if job is not None:
                jobs[job_id] = job
        pending = [j for j in pending if j not in jobs or not jobs[j].terminal]
        if not pending or time.monotonic() >= deadline:
            return jobs
        time.sleep(step_s)


@dataclass
class Gap:
    seconds: float = 0.0
    host: str = ""
    phase: str = ""


class HeartbeatWatch(threading.Thread):
    """Reads every host's heartbeat (the key ``Store.heartbeat`` reads, all hosts in one
    MGET) every ``period_s`` and keeps, per host, the largest gap between consecutive
    distinct ``at`` values, with the phase it ended in."""

    def __init__(self, store: Store, names: list[str], period_s: float = 0.1) -> None:
        super().__init__(name="heartbeat-watch", daemon=True)
        self.store, self.names, self.period_s = store, names, period_s
        self.phase = "idle"
        self.last: dict[str, float] = {}
        self.largest: dict[str, Gap] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        keys = [self.store.keys.heartbeat(n) for n in self.names]
        while not self._stop_event.wait(self.period_s):
            for name, raw in zip(self.names, self.store.r.mget(keys), strict=True):
                if raw is not None:
                    self._saw(name, float(json.loads(raw)["at"]))

    def _saw(self, host: str, at: float) -> None:
        before = self.last.get(host)
        self.last[host] = at
        if before is None or at == before:
            return
        gap = self.largest.setdefault(host, Gap())
        if at - before > gap.seconds:
            gap.seconds, gap.host, gap.phase = at - before, host, self.phase

    def worst(self) -> Gap:
        return max(self.largest.values(), key=lambda g: g.seconds, default=Gap())

    def finish(self) -> Gap:
        """Stop watching; a host still silent counts with the gap open so far."""
        self._stop_event.set()
        self.join(5)
        now = time.time()
        for host, at in self.last.items():
            gap = self.largest.setdefault(host, Gap())
            if now - at > gap.seconds:
                gap.seconds, gap.host, gap.phase = now - at, host, f"{self.phase} (open)"
        return self.worst()


@dataclass
class Cpu:
    """CPU seconds used by each kind of process, and the wall clock, at one moment (or,
    subtracted, over a window)."""

    controllers: float
    agents: float
    redis: float
    bench: float
    wall: float

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.controllers - other.controllers, self.agents - other.agents,
                   self.redis - other.redis, self.bench - other.bench, self.wall - other.wall)

    def cores(self) -> str:
        """Cores busy over the window: controllers / agents / redis-server / this bench."""
        used = (self.controllers, self.agents, self.redis, self.bench)
        return " / ".join(f"{c / self.wall:.2f}" if self.wall > 0 else "-" for c in used)


def cpu_now(fleet: Fleet) -> Cpu:
    return Cpu(sum(cpu_seconds(p.pid) for p in fleet.controllers),
               sum(cpu_seconds(p.pid) for p in fleet.agents), cpu_seconds(fleet.redis.pid),
               cpu_seconds(os.getpid()), time.monotonic())


@dataclass
class Phase:
    """One measured phase: how many things ended well or not, in what time, at what CPU."""

    done: int
    failed: int
    seconds: float
    cpu: Cpu
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def ms_per(self, cpu_s: float) -> float:
        return 1000 * cpu_s / self.done if self.done else float("nan")


def _median(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def _move_notes(moves: list[Move], seconds: float) -> dict[str, str]:
    """Where a move's time goes: waiting for an agent to claim it, then running; and how
    many were in flight on average (Little's law: time in flight summed over the wall)."""
    ended = [m for m in moves if m.state == MoveState.SUCCEEDED.value and m.started_at]
    waits = [m.started_at - m.dispatched_at for m in ended if m.dispatched_at]
    runs = [m.finished_at - m.started_at for m in ended]
    flying = sum(m.finished_at - m.dispatched_at for m in moves
                 if m.dispatched_at and m.finished_at)
    sent = sorted(m.dispatched_at for m in moves if m.dispatched_at)
    span = sent[-1] - sent[0] if len(sent) > 1 else 0.0
    errors = Counter(m.error.split(":")[0][:60] for m in moves
                     if m.state != MoveState.SUCCEEDED.value)
    return {"claim wait s": _median(waits), "run s": _median(runs),
            "in flight": f"{flying / seconds:.0f}" if seconds > 0 else "-",
            "dispatch/s": f"{(len(sent) - 1) / span:.0f}" if span > 0 else "-",
            "move errors": "; ".join(f"{n}{TIMES} {e}" for e, n in errors.most_common(3)) or "-"}


def control_backlog(store: Store) -> int:
    """Messages waiting in the control queue (Celery's list under the fleet's prefix)."""
    from tasks.routing import CONTROL_QUEUE

    return int(store.r.llen(store.keys.celery + CONTROL_QUEUE))


def _ended(jobs: dict[str, Job], started: float) -> float:
    """Seconds from ``started`` until the last job ended (now, for one still running)."""
    return max((j.finished_at if j.terminal else time.time()) for j in jobs.values()) - started


def drain_phase(fleet: Fleet, fraction: float, per_host: int, timeout_s: float) -> Phase:
    from tasks.submit import submit_drain

    count = max(1, round(len(fleet.names) * fraction))
    step = len(fleet.names) / count
    hosts = [fleet.names[int(i * step)] for i in range(count)]  # spread over the agents
    store, before, started = fleet.store, cpu_now(fleet), time.time()
    job_id, _ = submit_drain(store, hosts, per_host, requested_by="bench")
    submitted = time.time() - started
    jobs = wait_jobs(store, [job_id], timeout_s)
    cpu, job, backlog = cpu_now(fleet) - before, jobs[job_id], control_backlog(store)
    moves, seconds = store.job_moves(job), _ended(jobs, started)
    done = sum(1 for m in moves if m.state == MoveState.SUCCEEDED.value)
    notes = {"hosts": str(count), "job": f"{job.state} ({job.concurrency} at once)",
             "submit s": f"{submitted:.2f}", "backlog": str(backlog),
             "plan ms": str(job.summary.get("plan_ms", "-")), **_move_notes(moves, seconds)}
    return Phase(done, len(moves) - done, seconds, cpu, notes)


def migrations_phase(fleet: Fleet, count: int, timeout_s: float) -> Phase:
    from tasks.submit import submit_migration

    store = fleet.store
    drained = {h.name for h in store.list_hosts() if h.state != "active"}
    names = _spread([vm for vm in store.list_vms() if vm.host not in drained], count)
    before, started = cpu_now(fleet), time.time()
    job_ids = [submit_migration(store, name, None, requested_by="bench")[0] for name in names]
    submitted = time.time() - started
    jobs = wait_jobs(store, job_ids, timeout_s)
    cpu = cpu_now(fleet) - before
    done = sum(1 for j in jobs.values() if j.state == "succeeded")
    moves, seconds = [m for j in jobs.values() for m in store.job_moves(j)], _ended(jobs, started)
    notes = {"submit s": f"{submitted:.2f}", **_move_notes(moves, seconds)}
    return Phase(done, len(jobs) - done, seconds, cpu, notes)


def _spread(vms: Sequence[VM], count: int) -> list[str]:
    """``count`` VM names taken round robin over their hosts (distinct sources first)."""
    by_host: dict[str, list[str]] = {}
    for vm in vms:
        by_host.setdefault(vm.host, []).append(vm.name)
    queues = [sorted(v) for _, v in sorted(by_host.items())]
    picked: list[str] = []
    while len(picked) < count and any(queues):
        for queue in queues:
            if queue and len(picked) < count:
                picked.append(queue.pop())
    return picked


def noop_phase(fleet: Fleet, count: int, timeout_s: float) -> Phase:
    from tasks.signed import send

    before, started = cpu_now(fleet), time.monotonic()
    results = [send("celery.accumulate", {}) for _ in range(count)]  # signed, as all work
    sent = time.monotonic() - started
    done = sum(1 for r in results if r.get(timeout=timeout_s) == [])  # its args, as a list
    seconds = time.monotonic() - started
    return Phase(done, count - done, seconds, cpu_now(fleet) - before, {"send s": f"{sent:.2f}"})


def idle_phase(fleet: Fleet, seconds: float) -> Phase:
    """What the fleet costs doing nothing: heartbeats, sweepers, reconcilers."""
    before = cpu_now(fleet)
    time.sleep(seconds)
    return Phase(0, 0, seconds, cpu_now(fleet) - before)


def warm_up(fleet: Fleet, timeout_s: float) -> None:
    """A few single migrations, so each controller's placement state is built."""
    from tasks.submit import submit_migration

    vms = fleet.store.list_vms()[: WARM_UP_PER_CONTROLLER * len(fleet.controllers)]
    ids = [submit_migration(fleet.store, vm.name, None, "bench-warm-up")[0] for vm in vms]
    wait_jobs(fleet.store, ids, timeout_s)
