"""Redis killed and restarted while a migration is in flight: nothing of fleet stops.

Its own redis-server (append-only file, fsync on every write) on a free port, a sim
agent and the controller. Redis is SIGKILLed mid-migration and started again on the same
port and directory; the agent and the controller must reconnect, the move must settle
with the VM on exactly one host (the one its record names), and a new migration must
run through the same processes. A second test pins the kombu defect behind it down at
the transport level (see ``tasks.resilience``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from fleet.cli.processes import Processes, wait_for
from fleet.core.models import Host
from fleet.store import Store
from tasks import resilience
from tests.conftest import require
from tests.integration.conftest import FAST, Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HOSTS = ("h1", "h2")


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[tuple[Cluster, str]]:
    """A sim fleet on a private persistent Redis; yields it and the Redis URL."""
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    procs = Processes(tmp_path)
    try:
        url = procs.start_redis(persist=True)
        prefix = f"rr-{uuid.uuid4().hex[:8]}"
        env = {**FAST, "FLEET_REDIS_URL": url, "FLEET_PREFIX": prefix,
               "FLEET_SIM_BANDWIDTH_MIB_S": "200"}
        store = Store.connect(url, prefix)
        for name in HOSTS:
            store.put_host(Host(name, vcpus=16, memory_mib=65536))
        cluster = Cluster(env, store, procs)
        cluster.start_agent("all", ",".join(HOSTS))
        procs.fleet("controller", ["controller"], env)
        wait_for(lambda: all(store.heartbeat(h) for h in HOSTS), 60,
                 f"the agent (logs in {tmp_path})")
        yield cluster, url
    finally:
        procs.stop_all()


def _move(cluster: Cluster, job_id: str) -> dict[str, Any]:
    shown = cluster.fleet("job", "show", job_id, "--json")
    assert shown.returncode == 0, shown.stderr
    moves: list[dict[str, Any]] = json.loads(shown.stdout)["moves"]
    return moves[0]


def _port(url: str) -> int:
    port = urlparse(url).port
    assert port is not None
    return port


def _restart_redis(cluster: Cluster, url: str) -> None:
    """SIGKILL the Redis of ``url`` and start it again on the same port and directory."""
    port = _port(url)
    redis = cluster.procs.named(f"redis-{port}")
    redis.send_signal(signal.SIGKILL)
    redis.wait(10)
    time.sleep(1.0)  # every process sees the broker gone before it is back
    cluster.procs.start_redis(persist=True, port=port)


def _settled_on_one_host(cluster: Cluster, vm: str) -> str:
    hosts = cluster.where(vm)
    assert len(hosts) == 1, f"{vm} on {hosts}"
    assert cluster.sim(hosts[0]).lookup(vm).state.value == "running"
    assert cluster.store.get_vm(vm).host == hosts[0]
    return hosts[0]


def test_agent_and_controller_survive_redis_restart_mid_migration(
        restartable: tuple[Cluster, str]) -> None:
    cluster, url = restartable
    cluster.add_vm("big-1", "h1", memory_mib=2048, dirty=20)
    cluster.add_vm("small-1", "h1", memory_mib=256, dirty=0)
    started = cluster.fleet("vm", "migrate", "big-1", "--to", "h2")
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.strip()

    def in_flight() -> bool:
        move = _move(cluster, job_id)
        progress = move.get("progress") or {}
        return move["state"] == "migrating" and float(progress.get("percent", 0)) > 5

    wait_for(in_flight, 30, "the migration to be under way")
    _restart_redis(cluster, url)

    assert cluster.store.find_vm("big-1") is not None, "records lost with the restart"
    agent = cluster.agents["all"]
    wait_for(lambda: agent.poll() is not None or cluster.store.get_job(job_id).terminal, 30,
             "the job to settle")
    assert agent.poll() is None, f"the agent exited ({agent.returncode}) on the restart"
    assert cluster.procs.named("controller").poll() is None, "the controller exited"
    assert _move(cluster, job_id)["state"] in ("succeeded", "failed")
    _settled_on_one_host(cluster, "big-1")

    again = cluster.fleet("vm", "migrate", "small-1", "--to", "h2", "--wait", "--json",
                          timeout=30)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _settled_on_one_host(cluster, "small-1") == "h2"
    assert agent.poll() is None and cluster.procs.named("controller").poll() is None


def test_channel_closed_after_the_broker_died_raises_connection_errors(tmp_path: Path) -> None:
    """kombu's close-after-collect with an unacked message and an auto-delete queue."""
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    import kombu

    resilience.install()
    procs = Processes(tmp_path)
    try:
        url = procs.start_redis(persist=True)
        port = _port(url)
        k: Any = kombu  # untyped library
        conn = k.Connection(url)
        work = k.Queue("work", k.Exchange("work"), "work")
        control = k.Queue("control", k.Exchange("control", type="fanout"), auto_delete=True)
        with conn.Producer() as producer:
            producer.publish({"n": 1}, exchange=work.exchange, routing_key="work",
                             declare=[work])
        held: list[Any] = []
        conn.Consumer(work, callbacks=[lambda _b, m: held.append(m)]).consume()
        conn.Consumer(control, callbacks=[lambda _b, _m: None]).consume()
        conn.drain_events(timeout=5)
        assert len(held) == 1  # delivered, not acknowledged
        with contextlib.suppress(socket.timeout):
            conn.drain_events(timeout=0.2)  # leaves a BRPOP pending, as an idle worker does
        procs.named(f"redis-{port}").send_signal(signal.SIGKILL)
        procs.named(f"redis-{port}").wait(10)
        conn.collect(socket_timeout=1)  # what the worker does on a lost connection
        conn.close()  # raised AttributeError ('NoneType' ... 'hostname') without the fix
        with pytest.raises(conn.connection_errors):
            held[0].ack()
    finally:
        procs.stop_all()
