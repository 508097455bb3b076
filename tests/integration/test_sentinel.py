"""Redis high availability: a master, a replica and three sentinels, all real processes.

fleet's processes reach Redis through the sentinels (``sentinel://…?master=fleet``). The
master is SIGKILLed in the middle of a drain; Sentinel promotes the replica; the drain
completes on the new master with every VM on exactly one host, and the monitor (which
judges hosts on heartbeats that pause while agents reconnect) fences nobody.
"""

from __future__ import annotations

import json
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from fleet.cli.processes import Processes, free_port, wait_for
from fleet.core.models import Host
from fleet.store import Store
from tests.conftest import require
from tests.integration.conftest import FAST, Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

HOSTS = ("h1", "h2", "h3")
FAILOVER = {"FLEET_FAILOVER_SUSPECT_AFTER_S": "1.5", "FLEET_FAILOVER_DOWN_AFTER_S": "2.5",
            "FLEET_FAILOVER_FENCE_TIMEOUT_S": "3", "FLEET_MONITOR_INTERVAL_S": "0.25"}
FENCE = {"FLEET_FENCE": json.dumps({"*": {"agent": "sim", "host": "{host}"}})}


def _sentinel_conf(path: Path, port: int, master_port: int) -> Path:
    path.write_text(f"port {port}\nbind 127.0.0.1\ndir {path.parent}\n"
                    f"sentinel monitor fleet 127.0.0.1 {master_port} 2\n"
                    "sentinel down-after-milliseconds fleet 1000\n"
                    "sentinel failover-timeout fleet 10000\n")
    return path


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, decode_responses=True, socket_timeout=2)


def _ready(master: int, replica: int, sentinels: list[int]) -> bool:
    try:
        synced = _client(replica).info("replication").get("master_link_status") == "up"
        return synced and all(
            len(_client(s).sentinel_sentinels("fleet")) == len(sentinels) - 1
            and len(_client(s).sentinel_slaves("fleet")) == 1 for s in sentinels)
    except redis.RedisError:
        return False


@pytest.fixture
def ha_redis(tmp_path: Path) -> Iterator[tuple[Processes, str, int, int]]:
    """Master, replica, three sentinels; yields them and the ``sentinel://`` URL."""
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    procs = Processes(tmp_path)
    try:
        master = int(procs.start_redis().rsplit(":", 1)[1].split("/")[0])
        replica = free_port()
        (tmp_path / "replica").mkdir()
        procs.spawn("replica", ["redis-server", "--port", str(replica), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir",
                                str(tmp_path / "replica"), "--replicaof", "127.0.0.1",
                                str(master)])
        sentinels = [free_port() for _ in range(3)]
        for port in sentinels:
            conf = _sentinel_conf(tmp_path / f"sentinel-{port}.conf", port, master)
            procs.spawn(f"sentinel-{port}", ["redis-server", str(conf), "--sentinel"])
        wait_for(lambda: _ready(master, replica, sentinels), 60, "replica and sentinels")
        url = ",".join(f"127.0.0.1:{p}" for p in sentinels)
        yield procs, f"sentinel://{url}/0?master=fleet", master, replica
    finally:
        procs.stop_all()


def _fleet(procs: Processes, url: str) -> Cluster:
    prefix = f"ha-{uuid.uuid4().hex[:8]}"
    # A move's lease must outlast a promotion (here ~2-4 s), or the reconciler takes a
    # move whose runner was only waiting for Redis for a vanished one (the production
    # default is 15 s; the other integration tests use 3 s).
    env = {**FAST, **FAILOVER, "FLEET_REDIS_URL": url, "FLEET_PREFIX": prefix,
           "FLEET_SIM_BANDWIDTH_MIB_S": "300", "FLEET_MOVE_LEASE_S": "15"}
    store = Store.connect(url, prefix, ride_out_s=30)  # reads through the promotion too
    for name in HOSTS:
        store.put_host(Host(name, vcpus=32, memory_mib=65536))
    cluster = Cluster(env, store, procs)
    cluster.start_agent("h1", "h1")
    cluster.start_agent("rest", "h2,h3")
    procs.fleet("controller", ["controller"], {**env, **FENCE})
    procs.fleet("monitor", ["monitor", "--name", "m1"], env)
    wait_for(lambda: all(store.heartbeat(h) for h in HOSTS), 60, "the agents")
    wait_for(lambda: store.failover.lease() is not None, 30, "the monitor")
    return cluster


def _moves(cluster: Cluster, job_id: str) -> list[str]:
    job = cluster.store.get_job(job_id)
    return [m.state for m in cluster.store.job_moves(job)]


def _errors(cluster: Cluster, job_id: str) -> list[str]:
    job = cluster.store.get_job(job_id)
    return [f"{m.vm} {m.source}->{m.destination} {m.state}: {m.error}"
            for m in cluster.store.job_moves(job)]


def test_a_drain_completes_across_a_sentinel_failover_and_nobody_is_fenced(
        ha_redis: tuple[Processes, str, int, int]) -> None:
    procs, url, master, replica = ha_redis
    cluster = _fleet(procs, url)
    names = [f"ha-{i}" for i in range(6)]
    for name in names:
        cluster.add_vm(name, "h1", memory_mib=1024, dirty=10)
        cluster.store.update_vm(name, ha=True)
    started = cluster.fleet("host", "drain", "h1", "--concurrency", "2")
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.strip()
    wait_for(lambda: "succeeded" in _moves(cluster, job_id), 60, "the first move to end")
    assert "pending" in _moves(cluster, job_id)  # the drain is in the middle
    procs.named(f"redis-{master}").send_signal(signal.SIGKILL)
    first = int(url.split(",")[0].rsplit(":", 1)[1])

    def promoted() -> bool:
        try:
            addr = _client(first).sentinel_get_master_addr_by_name("fleet")
        except redis.RedisError:
            return False
        return addr is not None and int(addr[1]) == replica

    wait_for(promoted, 60, "Sentinel to promote the replica")
    wait_for(lambda: cluster.store.get_job(job_id).terminal, 120, "the drain to end")
    assert cluster.store.get_job(job_id).state == "succeeded", _errors(cluster, job_id)
    for name in names:
        assert len(cluster.where(name)) == 1 and cluster.where(name) != ["h1"], name
        assert cluster.store.get_vm(name).host == cluster.where(name)[0]
    fenced = [e for _, e in cluster.store.journal.audit(5000)
              if e["kind"] in ("host.fenced", "host.health") and e.get("new") != "active"]
    assert not [e for e in fenced if e["kind"] == "host.fenced"], fenced
    gaps = [e for _, e in cluster.store.journal.audit(5000) if e["kind"] == "monitor.redis_gap"]
    assert gaps, "the monitor did not notice the failover"  # its guard was what held
    assert {h.name: h.state for h in cluster.store.list_hosts()} == {
        "h1": "maintenance", "h2": "active", "h3": "active"}
    for proc in ("controller", "monitor", "agent-h1", "agent-rest"):
        assert procs.named(proc).poll() is None, f"{proc} exited"
