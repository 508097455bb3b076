"""Integration fixtures: a private redis-server and real fleet processes (sim driver).

Each module gets its own key prefix, agents and controller; nothing is eager: tasks
travel through Redis to Celery workers in other processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleet.cli.processes import Processes, wait_for
from fleet.core.models import VM, Host
from fleet.settings import load_settings
from fleet.store import Store
from tests.conftest import require
from workers.hypervisors.sim import SimHypervisor
from workers.inventory import create_vm

FAST = {
    "FLEET_SIM_SPEED": "1.0", "FLEET_SIM_BANDWIDTH_MIB_S": "500",
    "FLEET_MOVE_LEASE_S": "3", "FLEET_RECONCILE_INTERVAL_S": "1",
    "FLEET_POLL_INTERVAL_S": "0.2", "FLEET_HEARTBEAT_TTL_S": "3",
    "FLEET_HEARTBEAT_INTERVAL_S": "0.5", "FLEET_PENDING_JOB_AFTER_S": "2",
}


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    procs = Processes(tmp_path_factory.mktemp("redis"))
    try:
        yield procs.start_redis()
    finally:
        procs.stop_all()


@dataclass
class Cluster:
    """A sim fleet with its agent and controller processes."""

    env: dict[str, str]
    store: Store
    procs: Processes
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start_agent(self, name: str, hosts: str) -> None:
        self.agents[name] = self.procs.fleet(f"agent-{name}",
                                             ["agent", "--hosts", hosts, "--driver", "sim"],
                                             self.env)

    def sim(self, host: str) -> SimHypervisor:
        return SimHypervisor(self.store.r, self.store.keys, host)

    def add_vm(self, name: str, host: str, memory_mib: int = 1024, dirty: float = 20.0) -> VM:
        return create_vm(self.store, self.sim(host),
                         VM(name, str(uuid.uuid4()), host, 1, memory_mib, dirty_mib_s=dirty))

    def fleet(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None,
              ) -> subprocess.CompletedProcess[str]:
        """Run the CLI with the cluster's settings (and ``env`` over them)."""
        return subprocess.run([sys.executable, "-m", "fleet.cli.main", *args],
                              env={**os.environ, **self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout, check=False)

    def where(self, vm: str) -> list[str]:
        """Hosts whose sim hypervisor has ``vm`` (running or paused)."""
        return [h.name for h in self.store.list_hosts()
                if any(d.name == vm for d in self.sim(h.name).list_domains())]


@pytest.fixture(scope="module")
def cluster_hosts() -> tuple[str, ...]:
    """The sim hosts of a module's cluster (a module may override this fixture)."""
    return ("h1", "h2", "h3")


@pytest.fixture(scope="module")
def cluster_env() -> dict[str, str]:
    """Extra settings for every process of a module's cluster (overridable)."""
    return {}


@pytest.fixture(scope="module")
def cluster(redis_url: str, tmp_path_factory: pytest.TempPathFactory,
            cluster_hosts: tuple[str, ...], cluster_env: dict[str, str],
            ) -> Iterator[Cluster]:
    prefix = f"it-{uuid.uuid4().hex[:8]}"
    env = {"FLEET_REDIS_URL": redis_url, "FLEET_PREFIX": prefix, **FAST, **cluster_env}
    os.environ.update(env)
    from tasks.app import reconfigure

    reconfigure(load_settings())
    store = Store.connect(redis_url, prefix)
    for name in cluster_hosts:
        store.put_host(Host(name, vcpus=16, memory_mib=65536))
    log_dir: Path = tmp_path_factory.mktemp(prefix)
    c = Cluster(env, store, Processes(log_dir))
    c.start_agent("h1", "h1")
    c.start_agent("rest", ",".join(cluster_hosts[1:]))
    c.procs.fleet("controller", ["controller"], env)
    try:
        wait_for(lambda: all(store.heartbeat(h) for h in cluster_hosts), 60,
                 f"agents (logs in {log_dir})")
        yield c
    finally:
        c.procs.stop_all()
        store.purge()
        for key in env:
            os.environ.pop(key, None)
