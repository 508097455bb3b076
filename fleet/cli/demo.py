"""``fleet demo``: a simulated fleet with real Redis, Celery workers and Flower.

It uses Redis at the configured URL, or starts a private ``redis-server`` when none
answers, and writes only under its own prefix (``<prefix>-demo``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from rich.console import Console

from fleet.cli.common import checked_settings
from fleet.cli.flower import FlowerClient
from fleet.cli.processes import Processes, free_port, wait_for
from fleet.core.models import VM, Host
from fleet.settings import Settings
from fleet.store import Store, redis_answers
from tasks.routing import FLOWER_COLUMNS

MAX_AGENTS = 8
DEMO_VMS = [("web-1", 2, 4096, 120.0), ("web-2", 2, 2048, 40.0), ("db-1", 4, 8192, 200.0)]


def _env(url: str, prefix: str, settings: Settings) -> dict[str, str]:
    return {
        "FLEET_REDIS_URL": url, "FLEET_PREFIX": prefix, "FLEET_SIM_SPEED": "1.0",
        "FLEET_SIM_BANDWIDTH_MIB_S": "600", "FLEET_FLOWER_USER": settings.flower_user,
        "FLEET_FLOWER_PASSWORD": settings.flower_password,
    }


def _seed(store: Store, settings: Settings, names: list[str]) -> None:
    from workers.hypervisors.sim import SimHypervisor
    from workers.inventory import create_vm

    store.purge()
    for name in names:
        store.put_host(Host(name, vcpus=32, memory_mib=65536, driver="sim"))
    for i, (vm, vcpus, mem, dirty) in enumerate(DEMO_VMS * max(1, len(names) // 3)):
        name = vm if i < len(DEMO_VMS) else f"{vm}-{i}"
        hv = SimHypervisor(store.r, store.keys, names[i % len(names)])
        create_vm(store, hv, VM(name, str(uuid.uuid4()), hv.host, vcpus, mem,
                                ha=True, priority=i % 3, dirty_mib_s=dirty))


def _start(procs: Processes, env: dict[str, str], names: list[str], flower_port: int,
           settings: Settings) -> None:
    per_agent = max(1, -(-len(names) // MAX_AGENTS))  # one agent per host, up to a limit
    for i in range(0, len(names), per_agent):
        group = names[i:i + per_agent]
        procs.fleet(f"agent-{group[0]}", ["agent", "--hosts", ",".join(group), "--driver",
                                          "sim"], env)
    procs.fleet("controller", ["controller"], env)
    procs.spawn("flower", [
        sys.executable, "-m", "celery", "-A", "tasks.app:app", "flower",
        f"--port={flower_port}", "--address=127.0.0.1", FLOWER_COLUMNS,
        f"--basic-auth={settings.flower_user}:{settings.flower_password}"], env)


def run_demo(hosts: int, once: bool, console: Console) -> int:
    settings = checked_settings()
    log_dir = Path(tempfile.mkdtemp(prefix="fleet-demo-"))
    procs = Processes(log_dir)
    try:
        return _scenario(procs, settings, hosts, once, console)
    finally:
        procs.stop_all()
        console.print(f"logs kept in {log_dir}")


def _scenario(procs: Processes, settings: Settings, hosts: int, once: bool,
              console: Console) -> int:
    url = settings.redis_url
    if not redis_answers(url):
        console.print(f"no Redis at {url}: starting a private redis-server")
        url = procs.start_redis()
    prefix = f"{settings.prefix}-demo"
    env = _env(url, prefix, settings)
    os.environ.update(env)  # the Celery app of this process must use the demo's Redis
    store = Store.connect(url, prefix)
    names = [f"h{i}" for i in range(1, hosts + 1)]
    _seed(store, settings, names)
    flower = FlowerClient(free_port(), settings.flower_user, settings.flower_password)
    _start(procs, env, names, flower.port, settings)
    wait_for(lambda: all(store.heartbeat(n) for n in names), 60, "agents' heartbeats")
    # a task that runs before Flower's event receiver listens never shows in Flower
    wait_for(flower.sees_workers, 60, "Flower to hear the workers")
    console.print(f"[green]{hosts} simulated hosts up; Flower on http://127.0.0.1:"
                  f"{flower.port} (user {settings.flower_user})[/]")
    return _migrate_and_report(store, flower, once, console)


def _migrate_and_report(store: Store, flower: FlowerClient, once: bool,
                        console: Console) -> int:
    from fleet.cli.watch import summary_table, watch_job
    from tasks.submit import submit_migration

    job_id, _ = submit_migration(store, "web-1", None, requested_by="demo")
    console.print(f"migrating web-1: job {job_id}")
    job = watch_job(store, job_id, console, timeout_s=300)
    console.print(summary_table(store, job))
    vm = store.get_vm("web-1")
    console.print(f"web-1 now runs on {vm.host}")
    wait_for(lambda: bool(flower.tasks("fleet.vm.migrate")), 30, "Flower to list the task")
    console.print(f"Open Flower: http://127.0.0.1:{flower.port}/tasks"
                  f" (basic auth {flower.user}) — task fleet.vm.migrate is there")
    if not once:
        console.print("In another terminal:\n"
                      f"  export FLEET_REDIS_URL={os.environ['FLEET_REDIS_URL']}"
                      f" FLEET_PREFIX={os.environ['FLEET_PREFIX']}\n"
                      "  fleet hosts; fleet vm migrate web-2 --wait; fleet host drain h2 --wait\n"
                      "Ctrl-C ends the demo.")
        _idle()
    return 0 if job.state == "succeeded" else 1


def _idle() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return
