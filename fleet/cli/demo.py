"""``fleet demo``: a simulated fleet with real Redis, Celery workers and Flower.

It uses Redis at the configured URL, or starts a private ``redis-server`` when none
answers, and writes only under its own prefix (``<prefix>-demo``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from rich.console import Console

from fleet.cli.common import checked_settings
from fleet.cli.flower import FlowerClient
from fleet.cli.processes import Processes, free_port, wait_for, wait_for_value
from fleet.core.errors import InvalidInput
from fleet.core.models import VM, Host, Job, JobState
from fleet.settings import Settings
from fleet.store import Store, redis_answers
from tasks.routing import FLOWER_COLUMNS
from workers.signing import generate

MAX_AGENTS = 8
VMS_PER_HOST = 8  # the largest demo shape (4 vCPUs, 8 GiB) fits 8 times on a demo host
DEMO_VMS = [("web-1", 2, 4096, 120.0), ("web-2", 2, 2048, 40.0), ("db-1", 4, 8192, 200.0)]
FAILOVER = {  # quick judgement for the demo; production defaults are in the README
    "FLEET_FAILOVER_SUSPECT_AFTER_S": "2", "FLEET_FAILOVER_DOWN_AFTER_S": "3",
    "FLEET_FAILOVER_FENCE_TIMEOUT_S": "5", "FLEET_MONITOR_INTERVAL_S": "0.25",
}
FENCE = {"FLEET_FENCE": json.dumps({"*": {"agent": "sim", "host": "{host}"}})}  # controller


def _env(url: str, prefix: str, settings: Settings) -> dict[str, str]:
    return {
        "FLEET_REDIS_URL": url, "FLEET_PREFIX": prefix, "FLEET_SIM_SPEED": "1.0",
        "FLEET_SIM_BANDWIDTH_MIB_S": "600", "FLEET_FLOWER_USER": settings.flower_user,
        "FLEET_FLOWER_PASSWORD": settings.flower_password, **FAILOVER,
    }


def demo_vms(count: int) -> list[tuple[str, int, int, float]]:
    """``count`` guests cycling through the demo shapes: web-1, web-2, db-1, web-1-3, ..."""
    shapes = [DEMO_VMS[i % len(DEMO_VMS)] for i in range(count)]
    return [(vm if i < len(DEMO_VMS) else f"{vm}-{i}", vcpus, mem, dirty)
            for i, (vm, vcpus, mem, dirty) in enumerate(shapes)]


def _seed(store: Store, names: list[str], vms: int) -> None:
    from workers.hypervisors.sim import SimHypervisor
    from workers.inventory import create_vm

    store.purge()
    for name in names:
        store.put_host(Host(name, vcpus=32, memory_mib=65536, driver="sim"))
    for i, (vm, vcpus, mem, dirty) in enumerate(demo_vms(vms)):
        hv = SimHypervisor(store.r, store.keys, names[i % len(names)])
        create_vm(store, hv, VM(vm, str(uuid.uuid4()), hv.host, vcpus, mem,
                                ha=True, priority=i % 3, dirty_mib_s=dirty))


def _start(procs: Processes, env: dict[str, str], names: list[str], flower_port: int,
           settings: Settings) -> None:
    per_agent = max(1, -(-len(names) // MAX_AGENTS))  # one agent per host, up to a limit
    for i in range(0, len(names), per_agent):
        group = names[i:i + per_agent]
        procs.fleet(f"agent-{group[0]}", ["agent", "--hosts", ",".join(group), "--driver",
                                          "sim"], env)
    procs.fleet("controller", ["controller"], {**env, **FENCE})  # fencing runs there
    procs.fleet("monitor", ["monitor", "--name", "demo-monitor"], env)
    procs.spawn("flower", [
        sys.executable, "-m", "celery", "-A", "tasks.app:app", "flower",
        f"--port={flower_port}", "--address=127.0.0.1", FLOWER_COLUMNS],
        {**env, "FLOWER_BASIC_AUTH": f"{settings.flower_user}:{settings.flower_password}"})


def run_demo(hosts: int, vms: int | None, once: bool, console: Console) -> int:
    settings = checked_settings()
    count = len(DEMO_VMS) * max(1, hosts // len(DEMO_VMS)) if vms is None else vms
    if count > VMS_PER_HOST * (hosts - 1):
        raise InvalidInput(f"--vms {count} does not fit: {hosts} hosts take at most"
                           f" {VMS_PER_HOST * (hosts - 1)} demo VMs with one host's worth"
                           " free for the failover")
    log_dir = Path(tempfile.mkdtemp(prefix="fleet-demo-"))
    procs = Processes(log_dir)
    try:
        return _scenario(procs, settings, hosts, count, once, console)
    finally:
        procs.stop_all()
        console.print(f"logs kept in {log_dir}")


def _scenario(procs: Processes, settings: Settings, hosts: int, vms: int, once: bool,
              console: Console) -> int:
    url = settings.redis_url
    if not redis_answers(url):
        console.print(f"no Redis at {url}: starting a private redis-server")
        url = procs.start_redis()
    prefix = f"{settings.prefix}-demo"
    env = _env(url, prefix, settings)
    env["FLEET_KEYS_DIR"] = settings.keys_dir or str(procs.log_dir / "keys")
    generate(env["FLEET_KEYS_DIR"])  # the demo's own keys, unless this machine has some
    os.environ.update(env)  # the Celery app of this process must use the demo's Redis
    store = Store.connect(url, prefix)
    names = [f"h{i}" for i in range(1, hosts + 1)]
    _seed(store, names, vms)
    flower = FlowerClient(free_port(), settings.flower_user, settings.flower_password)
    _start(procs, env, names, flower.port, settings)
    wait_for(lambda: all(store.heartbeat(n) for n in names), 60, "agents' heartbeats")
    wait_for(lambda: store.failover.lease() is not None, 60, "the monitor's lease")
    wait_for(lambda: store.failover.fence_config() is not None, 60, "the fence agents")
    # a task that runs before Flower's event receiver listens never shows in Flower
    wait_for(flower.sees_workers, 60, "Flower to hear the workers")
    console.print(f"[green]{hosts} simulated hosts and {vms} VMs up; Flower on"
                  f" http://127.0.0.1:{flower.port} (user {settings.flower_user})[/]")
    migrated = _migrate_and_report(store, flower, console)
    failed_over = _fail_over(store, console)
    if not once:
        _hints(console)
    return 0 if migrated and failed_over else 1


def _migrate_and_report(store: Store, flower: FlowerClient, console: Console) -> bool:
    from fleet.cli.watch import summary_table, watch_job
    from tasks.submit import submit_migration

    job_id, _ = submit_migration(store, "web-1", None, requested_by="demo")
    console.print(f"migrating web-1: job {job_id}")
    job = watch_job(store, job_id, console, timeout_s=300)
    console.print(summary_table(store, job))
    console.print(f"web-1 now runs on {store.get_vm('web-1').host}")
    wait_for(lambda: bool(flower.tasks("fleet.vm.migrate")), 30, "Flower to list the task")
    console.print(f"Open Flower: http://127.0.0.1:{flower.port}/tasks"
                  f" (basic auth {flower.user}) — task fleet.vm.migrate is there")
    return job.state == JobState.SUCCEEDED


def _fail_over(store: Store, console: Console) -> bool:
    """Cut the power of the host with the most VMs and show the failover job's outcome."""
    from fleet.cli.watch import summary_table
    from workers.hypervisors.sim import SimHypervisor

    counts = Counter(vm.host for vm in store.list_vms())
    victim = max(sorted(counts), key=lambda h: counts[h])
    console.print(f"cutting the power of {victim} ({counts[victim]} HA VMs): the monitor"
                  " must fence it, then restart its VMs elsewhere")
    cut_at = time.time()
    SimHypervisor(store.r, store.keys, victim).power_off()

    def finished() -> Job | None:  # the failover job the monitor keeps for the host
        job_id = store.failover.job(victim)
        job = store.find_job(job_id) if job_id else None
        return job if job is not None and job.terminal else None

    job = wait_for_value(finished, 120, f"the failover of {victim}")
    console.print(summary_table(store, job))
    console.print(f"failover of {victim} took {job.finished_at - cut_at:.1f} s from the power"
                  " cut")
    return job.state == JobState.SUCCEEDED


def _hints(console: Console) -> None:
    console.print("In another terminal:\n"
                  f"  export FLEET_REDIS_URL={os.environ['FLEET_REDIS_URL']}"
                  f" FLEET_PREFIX={os.environ['FLEET_PREFIX']}"
                  f" FLEET_KEYS_DIR={os.environ['FLEET_KEYS_DIR']}\n"
                  "  fleet hosts; fleet vms; fleet vm migrate web-2 --wait\n"
                  "  fleet sim power off h2; fleet jobs; fleet sim power on h2\n"
                  "  fleet sim vm create app-1 --host h1 --ha; fleet host drain h1 --wait\n"
                  "Ctrl-C ends the demo.")
    _idle()


def _idle() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return
