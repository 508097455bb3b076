"""Services of the lab beside its hosts: the bridge Redis, fleet agents and controller.

Lab agents live in network namespaces and cannot reach the root namespace's loopback,
so the lab runs its own Redis bound to the bridge address. It persists like compose.yaml's
(AOF) into ``<lab dir>/redis``, so a Redis restarted mid-drain comes back with every job,
VM and move record; ``fleet lab down`` removes that directory with the lab. Agents run
inside their host's namespaces, the controller in the root namespace; all get
``FLEET_REDIS_URL`` of that Redis and ``FLEET_PREFIX`` of the lab.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from fleet.core.models import Host
from fleet.lab.config import LabConfig
from fleet.lab.hosts import nsenter
from fleet.lab.procs import LabError, alive, spawn, wait_until
from fleet.lab.state import LabState
from fleet.store import Store, redis_answers
from tasks.routing import FLOWER_COLUMNS

REPO = Path(__file__).resolve().parents[2]


def lab_redis_answers(cfg: LabConfig) -> bool:
    return redis_answers(cfg.redis_url, timeout_s=0.5)


def ensure_redis(cfg: LabConfig, pid: int) -> int:
    """The lab's Redis on the bridge address (started unless ``pid`` is alive).

    Append-only file on, as in compose.yaml: a restart on the same directory reloads it.
    """
    if alive(pid) and lab_redis_answers(cfg):
        return pid
    data = cfg.path / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = ["redis-server", "--bind", cfg.bridge_address, "--port", str(cfg.redis_port),
            "--dir", str(data), "--appendonly", "yes", "--protected-mode", "no",
            "--daemonize", "no"]
    pid = spawn(argv, cfg.log_dir / "redis.log")
    wait_until(lambda: lab_redis_answers(cfg) or not alive(pid), 10.0, "the lab's Redis")
    if not alive(pid):
        raise LabError(f"the lab's Redis exited; see {cfg.log_dir}/redis.log")
    return pid


def lab_store(cfg: LabConfig) -> Store:
    return Store.connect(cfg.redis_url, cfg.prefix)


def register_hosts(cfg: LabConfig) -> None:
    """A libvirt host record per lab host; existing records keep their state and labels."""
    store = lab_store(cfg)
    for name in cfg.host_names():
        host = store.find_host(name) or Host(name, cfg.host_vcpus, cfg.host_memory_mib)
        host.address, host.migration_uri = cfg.address(name), cfg.uri(name)
        host.driver = "libvirt"
        store.put_host(host)


def fleet_env(cfg: LabConfig) -> dict[str, str]:
    """The environment of fleet processes in the lab (lab fencing: the power switch)."""
    path = os.environ.get("PYTHONPATH", "")
    fence = {"*": {"agent": "lab", "netns": f"{cfg.netns_prefix}{{host}}"}}
    # the lab's libvirtds listen in clear on its private bridge (qemu+tcp)
    return {**os.environ, **cfg.client_env(), "FLEET_MIGRATION_ALLOW_TCP": "true",
            "FLEET_FENCE": os.environ.get("FLEET_FENCE") or json.dumps(fence),
            "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


def agent_argv(cfg: LabConfig, host: str) -> list[str]:
    """A lab agent: lab hosts share one machine, so their capacity is configured (the
    libvirt facts, e.g. ``node.cpus``, are the machine's)."""
    return [sys.executable, "-m", "fleet.cli.main", "agent", "--host", host,
            "--driver", "libvirt", "--uri", "qemu:///system",
            "--vcpus", str(cfg.host_vcpus), "--memory-mib", str(cfg.host_memory_mib)]


def start_agents(cfg: LabConfig, state: LabState, hosts: list[str] | None = None) -> None:
    """Start the fleet agent of each host (unless alive) inside the host's namespaces."""
    env = fleet_env(cfg)
    for host in hosts or cfg.host_names():
        pids = state.host(host)
        if alive(pids.agent) or not alive(pids.holder):
            continue
        pids.agent = spawn([*nsenter(pids.holder), *agent_argv(cfg, host)],
                           cfg.log_dir / f"{host}-agent.log", env=env)


def start_controller(cfg: LabConfig, state: LabState) -> None:
    """Start the controller, the monitor and Flower (those not alive), root namespace."""
    env = fleet_env(cfg)
    fleet = [sys.executable, "-m", "fleet.cli.main"]
    if not alive(state.controller):
        state.controller = spawn([*fleet, "controller"], cfg.log_dir / "controller.log",
                                 env=env)
    if not alive(state.monitor):
        state.monitor = spawn([*fleet, "monitor", "--name", "lab"],
                              cfg.log_dir / "monitor.log", env=env)
    if not alive(state.flower):
        state.flower = spawn(flower_argv(cfg), cfg.log_dir / "flower.log",
                             env={**env, "FLOWER_BASIC_AUTH": flower_auth()})


def flower_auth() -> str:
    """Flower's basic auth (FLEET_FLOWER_USER / FLEET_FLOWER_PASSWORD), handed over in
    its environment: a password on a command line is readable by every local user."""
    user = os.environ.get("FLEET_FLOWER_USER", "fleet")
    return f"{user}:{os.environ.get('FLEET_FLOWER_PASSWORD', 'fleet')}"


def flower_argv(cfg: LabConfig) -> list[str]:
    """Flower on loopback (basic auth from ``FLOWER_BASIC_AUTH``, see ``flower_auth``)."""
    return [sys.executable, "-m", "celery", "-A", "tasks.app:app", "flower", FLOWER_COLUMNS,
            f"--port={cfg.flower_port}", "--address=127.0.0.1"]
