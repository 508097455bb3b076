"""``fleet job show``, ``vm show`` and ``vm policy`` through the real CLI on real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from fleet.core.models import VM, Host, Job, Move
from fleet.store import Store
from fleet.store.records import dump

pytestmark = pytest.mark.integration
DAY = 1_796_205_600.0  # 2026-12-02T10:00:00Z


@pytest.fixture
def shown_store(redis_url: str) -> Iterator[Store]:
    store = Store.connect(redis_url, f"show-{uuid.uuid4().hex[:8]}")
    yield store
    store.purge()


def _fleet(store: Store, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLEET_REDIS_URL": redis_url, "FLEET_PREFIX": store.keys.prefix,
           "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "fleet.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def _save(store: Store, job: Job, moves: list[Move]) -> None:
    job.moves = [m.id for m in moves]
    store.r.set(store.keys.job(job.id), dump(job))
    store.r.zadd(store.keys.jobs, {job.id: job.created_at})
    for move in moves:
        store.r.set(store.keys.move(move.id), dump(move))


def test_job_show_says_where_moves_went_and_what_failover_did(shown_store: Store,
                                                               redis_url: str) -> None:
    moved = Move("0123456789abcdef", "00000000000000a1", "web-1", "h1", destination="h3",
                 state="succeeded", excluded=["h2"], started_at=DAY + 5,
                 finished_at=DAY + 190, progress={"percent": 71.0, "processed_mib": 1228.8,
                                                  "downtime_ms": 250.0})
    _save(shown_store, Job("00000000000000a1", "migrate", "succeeded", "cli:ann@ops",
                           created_at=DAY, started_at=DAY, finished_at=DAY + 191), [moved])
    _save(shown_store, Job("00000000000000b2", "failover", "failed", "monitor:m1", "h4",
                           summary={"vms": {"vm-h4-0": "running on h2",
                                            "vm-h4-1": "down: host h4 is off; no host with"
                                                       " room"}},
                           created_at=DAY, started_at=DAY, finished_at=DAY + 30), [])
    done = _fleet(shown_store, redis_url, "job", "show", "00000000000000a1")
    assert done.returncode == 0, done.stderr
    for needle in ("h3 (re-placed; tried h2)", "1.2 GiB", "250 ms", "100 %", "3m 05s",
                   "2026-12-02T10:00:00Z", "cli:ann@ops"):
        assert needle in done.stdout, needle
    data = json.loads(_fleet(shown_store, redis_url, "job", "show", "00000000000000a1",
                             "--json").stdout)
    assert data["moves"][0]["progress"]["percent"] == 100.0
    assert data["moves"][0]["transferred_mib"] == 1228.8 and data["duration_s"] == 191.0
    failover = _fleet(shown_store, redis_url, "job", "show", "00000000000000b2")
    assert failover.returncode == 0, failover.stderr
    assert "restarted on h2" in failover.stdout
    assert "not restarted: no capacity" in failover.stdout and "{'" not in failover.stdout


def test_vm_show_and_policy_read_as_words(shown_store: Store, redis_url: str) -> None:
    shown_store.put_host(Host("h1", 8, 8192))
    shown_store.put_vm(VM("pol-9", "u-9", "h1", 1, 512, policy={"max_downtime_ms": 500}))
    policy = _fleet(shown_store, redis_url, "vm", "policy", "pol-9")
    assert policy.returncode == 0, policy.stderr
    lines = {line.split()[1]: line for line in policy.stdout.splitlines()
             if line.startswith("│") and len(line.split()) > 3}
    assert "500" in lines["max_downtime_ms"] and "set for this VM" in lines["max_downtime_ms"]
    assert "default" in lines["allow_postcopy"] and "no" in lines["allow_postcopy"]
    shown = _fleet(shown_store, redis_url, "vm", "show", "pol-9")
    assert shown.returncode == 0, shown.stderr
    assert "max_downtime_ms: 500" in shown.stdout and "{'" not in shown.stdout
    assert "True" not in shown.stdout and "False" not in shown.stdout
