"""Forged work pushed into the queues: real agents and a real controller refuse it.

Whoever can write to Redis can push a Celery message; only messages signed by the
control plane make a host act, and a fence also needs the leading monitor's decision.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from celery.exceptions import TimeoutError as CeleryTimeout

from fleet.cli.processes import wait_for
from fleet.core.models import JobKind, Move
from tests.integration.conftest import Cluster
from workers.signing import AGENT, Keyring


def _log(cluster: Cluster, name: str) -> str:
    return (cluster.procs.log_dir / f"{name}.log").read_text(errors="replace")


def _refused(result: Any) -> str:
    with pytest.raises(Exception) as caught:  # the task's own failure
        result.get(timeout=30)
    assert not isinstance(caught.value, CeleryTimeout), "no worker answered"
    assert type(caught.value).__name__ == "WorkRefused", caught.value
    return str(caught.value)


def _pending_move(cluster: Cluster, vm: str) -> tuple[str, dict[str, str]]:
    cluster.add_vm(vm, "h1", memory_mib=512, dirty=0)
    job = cluster.store.create_move_job(JobKind.MIGRATE, "test", [Move("", "", vm, "h1")])
    move = cluster.store.job_moves(job)[0]
    cluster.store.set_move(move.id, "pending", destination="h2")
    return move.id, {"move_id": move.id, "vm": vm, "source": "h1", "destination": "h2",
                     "job_id": job.id}


def test_an_unsigned_migration_does_nothing(cluster: Cluster) -> None:
    from tasks.app import app

    move_id, kwargs = _pending_move(cluster, "forged-1")
    why = _refused(app.send_task("fleet.vm.migrate", kwargs=kwargs))
    assert "unsigned" in why
    assert cluster.where("forged-1") == ["h1"]
    assert cluster.store.get_move(move_id).state == "pending"  # never claimed
    assert "refused task fleet.vm.migrate" in _log(cluster, "agent-h1")


def test_a_migration_signed_with_a_host_key_does_nothing(cluster: Cluster) -> None:
    import os

    from tasks.app import app

    move_id, kwargs = _pending_move(cluster, "forged-2")
    host_key = Keyring.load(os.environ["FLEET_KEYS_DIR"], AGENT)
    why = _refused(app.send_task("fleet.vm.migrate",
                                 kwargs=host_key.seal("fleet.vm.migrate", kwargs)))
    assert "signed by 'agent', which may not send it" in why
    assert cluster.where("forged-2") == ["h1"]
    assert cluster.store.get_move(move_id).state == "pending"


def test_the_same_migration_signed_by_the_control_plane_runs(cluster: Cluster) -> None:
    from tasks.signed import send

    _, kwargs = _pending_move(cluster, "signed-1")
    assert send("fleet.vm.migrate", kwargs).get(timeout=60)["state"] == "succeeded"
    assert cluster.where("signed-1") == ["h2"]


def test_an_unsigned_fence_powers_nothing_off(cluster: Cluster) -> None:
    from tasks.app import app

    why = _refused(app.send_task("fleet.host.fence", kwargs={
        "host": "h3", "attempt": 1, "timeout_s": 2.0, "epoch": 1}))
    assert "unsigned" in why
    assert cluster.sim("h3").powered()
    assert "refused task fleet.host.fence" in _log(cluster, "controller")


def test_a_signed_fence_the_monitor_did_not_decide_is_refused(cluster: Cluster) -> None:
    """Even the control plane's signature is not enough: the leading monitor's saved
    state must have the host fencing at that attempt under the current epoch."""
    from tasks.signed import send

    cluster.store.r.set(cluster.store.keys.monitor_epoch, 7)
    details = {}
    for epoch in (0, 6, 7, 8):
        result = send("fleet.host.fence", {"host": "h3", "attempt": 1, "timeout_s": 2.0,
                                           "epoch": epoch}).get(timeout=30)
        assert result["ok"] is False and result["skipped"] is True, result
        details[epoch] = str(result["detail"])
    for epoch in (0, 6, 8):
        assert "the current epoch is 7" in details[epoch], details[epoch]
    assert "has h3 unwatched (attempt 0), not fencing at attempt 1" in details[7]
    time.sleep(0.5)
    assert cluster.sim("h3").powered()
    assert cluster.store.failover.peek() == []  # no fence result reaches the monitor
    wait_for(lambda: "fence of h3 refused" in _log(cluster, "controller"), 10,
             "the controller to log the refusal")
