"""The Redis password never shows: a fleet on a password-protected Redis (agents, a
controller, a monitor, the CLI succeeding and failing) and every line they print or log
is searched for it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.cli.processes import Processes, free_port, wait_for
from fleet.core.models import Host
from fleet.settings import load_settings
from fleet.store import Store
from tests.conftest import require
from tests.integration.conftest import FAST, Cluster

PASSWORD = f"Pw-{uuid.uuid4().hex}"  # a throwaway password of this test


@pytest.fixture()
def guarded(tmp_path: Path) -> Iterator[Cluster]:
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    procs = Processes(tmp_path)
    port = free_port()
    (tmp_path / "redis").mkdir()
    procs.spawn("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", str(tmp_path / "redis"),
                          "--requirepass", PASSWORD])
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    wait_for(lambda: _answers(url), 20, "redis-server with a password")
    env = {**FAST, "FLEET_REDIS_URL": url, "FLEET_PREFIX": f"pw-{uuid.uuid4().hex[:6]}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from tasks.app import reconfigure

    reconfigure(load_settings())
    store = Store.connect(url, env["FLEET_PREFIX"])
    for name in ("h1", "h2"):
        store.put_host(Host(name, vcpus=16, memory_mib=65536))
    cluster = Cluster(env, store, procs)
    cluster.start_agent("all", "h1,h2")
    procs.fleet("controller", ["controller"], env)
    procs.fleet("monitor", ["monitor", "--name", "pw"], env)
    try:
        wait_for(lambda: all(store.heartbeat(h) for h in ("h1", "h2")), 60, "the agent")
        yield cluster
    finally:
        procs.stop_all()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reconfigure(load_settings())


def _answers(url: str) -> bool:
    from fleet.store import redis_answers

    return redis_answers(url)


def test_the_redis_password_appears_in_no_output_and_no_log(guarded: Cluster) -> None:
    guarded.add_vm("pw-1", "h1", memory_mib=512, dirty=0)
    said: list[str] = []
    for args, env in [
        (["vm", "migrate", "pw-1", "--wait"], {}),
        (["hosts"], {}),
        (["jobs", "--json"], {}),
        (["hosts"], {"FLEET_REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"}),
        (["hosts"], {"FLEET_REDIS_URL": f"rediss://:{PASSWORD}@"}),
        (["hosts"], {"FLEET_REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:6379/x"}),
    ]:
        done = guarded.fleet(*args, env=env)
        said += [done.stdout, done.stderr]
    assert guarded.where("pw-1") == ["h2"]  # the fleet did its work meanwhile
    assert any("cannot reach Redis" in s for s in said)
    worker = subprocess.run([sys.executable, "-m", "fleet.cli.main", "agent", "--hosts", "h9",
                             "--driver", "sim"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, **guarded.env, "FLEET_KEYS_DIR": ""},
                            check=False)  # a worker that cannot start says why
    assert worker.returncode == 2 and "FLEET_KEYS_DIR" in worker.stderr
    said += [worker.stdout, worker.stderr]
    logs = {p.name: p.read_text(errors="replace")
            for p in guarded.procs.log_dir.glob("*.log")}
    assert {"agent-all.log", "controller.log", "monitor.log"} <= set(logs)
    assert "Connected to" in logs["controller.log"]  # the worker did log its broker
    leaks = [name for name, text in logs.items() if PASSWORD in text]
    leaks += [f"output {i}" for i, text in enumerate(said) if PASSWORD in text]
    assert leaks == []
