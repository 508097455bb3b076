"""A sim migration end to end: CLI -> Redis -> controller -> agent -> Redis -> CLI."""

from __future__ import annotations

import json
import signal
import time

import pytest

from fleet.cli.processes import wait_for
from fleet.core.models import JobKind, Move
from tests.integration.conftest import Cluster

pytestmark = pytest.mark.integration


def test_migrate_through_the_cli(cluster: Cluster) -> None:
    cluster.add_vm("web-1", "h1", memory_mib=2048, dirty=40)
    done = cluster.fleet("vm", "migrate", "web-1", "--to", "h2", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["state"] == "succeeded" and job["moves"][0]["state"] == "succeeded"
    assert cluster.where("web-1") == ["h2"]
    vms = json.loads(cluster.fleet("vms", "--json").stdout)
    assert {v["name"]: v["host"] for v in vms}["web-1"] == "h2"
    hosts = {h["name"]: h for h in json.loads(cluster.fleet("hosts", "--json").stdout)}
    assert "web-1" in hosts["h2"]["vms"] and hosts["h2"]["used_memory_mib"] >= 2048
    progress = [e for _, e in cluster.store.events(job["id"]) if e["kind"] == "move.progress"]
    assert len(progress) >= 2
    assert progress[-1]["processed_mib"] > progress[0]["processed_mib"]


def test_migrate_without_destination_is_placed(cluster: Cluster) -> None:
    cluster.add_vm("web-2", "h1", memory_mib=512, dirty=0)
    done = cluster.fleet("vm", "migrate", "web-2", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    assert cluster.where("web-2")[0] in ("h2", "h3")
    shown = cluster.fleet("job", "show", json.loads(done.stdout)["id"], "--json")
    assert json.loads(shown.stdout)["moves"][0]["destination"] == cluster.where("web-2")[0]


def test_same_message_twice_moves_once(cluster: Cluster) -> None:
    from tasks.app import app
    from tasks.signed import sealed

    cluster.add_vm("dup-1", "h1", memory_mib=1024, dirty=10)
    job = cluster.store.create_move_job(JobKind.MIGRATE, "test", [Move("", "", "dup-1", "h1")])
    move = cluster.store.job_moves(job)[0]
    cluster.store.set_move(move.id, "pending", destination="h3")
    kwargs = {"move_id": move.id, "vm": "dup-1", "source": "h1", "destination": "h3",
              "job_id": job.id}
    signed = sealed("fleet.vm.migrate", kwargs)  # one message, delivered twice
    results = [app.send_task("fleet.vm.migrate", kwargs=signed) for _ in range(2)]
    outcomes = [r.get(timeout=60) for r in results]
    duplicate = [o for o in outcomes if "not claimed" in o["detail"]]
    ran = [o for o in outcomes if "not claimed" not in o["detail"]]
    assert len(duplicate) == 1 and len(ran) == 1 and ran[0]["state"] == "succeeded"
    assert cluster.where("dup-1") == ["h3"]
    kinds = [e["kind"] for _, e in cluster.store.events(job.id)]
    assert kinds.count("move.claimed") == 1 and kinds.count("move.succeeded") == 1


def test_agent_killed_mid_move_is_reconciled(cluster: Cluster) -> None:
    cluster.add_vm("big-1", "h1", memory_mib=16384, dirty=50)
    started = cluster.fleet("vm", "migrate", "big-1", "--to", "h2")
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.strip()

    def migrating() -> bool:
        move = cluster.store.job_moves(cluster.store.get_job(job_id))[0]
        return move.state == "migrating" and move.progress.get("percent", 0) > 5

    wait_for(migrating, 30, "the move to be under way")
    cluster.agents["h1"].send_signal(signal.SIGKILL)
    cluster.agents["h1"].wait(10)
    assert sorted(cluster.where("big-1")) == ["h1", "h2"]  # source + paused incoming
    time.sleep(3.5)  # the lease lapses; nobody may act on the move meanwhile
    assert cluster.store.job_moves(cluster.store.get_job(job_id))[0].state == "migrating"
    cluster.start_agent("h1", "h1")

    def settled() -> bool:
        return cluster.store.get_job(job_id).terminal

    wait_for(settled, 60, "the reconciler to settle the job")
    move = cluster.store.job_moves(cluster.store.get_job(job_id))[0]
    assert move.state == "failed" and "runner vanished" in move.error
    assert cluster.where("big-1") == ["h1"]
    assert cluster.sim("h1").lookup("big-1").state.value == "running"
    assert cluster.store.get_vm("big-1").host == "h1"
    assert cluster.store.get_job(job_id).state == "failed"
    again = cluster.fleet("vm", "migrate", "big-1", "--to", "h3")
    assert again.returncode == 0 and again.stdout.strip() != job_id  # the VM is free again


def test_every_key_is_under_the_prefix(cluster: Cluster) -> None:
    prefix = cluster.env["FLEET_PREFIX"] + ":"
    stray = [k for k in cluster.store.r.scan_iter(count=1000)
             if k.startswith(("celery", "_kombu", "unacked", "host.", "fleet."))]
    assert stray == []
    ours = list(cluster.store.r.scan_iter(match=prefix + "*", count=1000))
    assert any(k.startswith(prefix + "celery:") for k in ours)


def test_claim_race_on_real_redis(cluster: Cluster) -> None:
    from tests.unit.test_claims import race

    cluster.add_vm("race-1", "h1")
    job = cluster.store.create_move_job(JobKind.MIGRATE, "test", [Move("", "", "race-1", "h1")])
    move = cluster.store.job_moves(job)[0]
    cluster.store.set_move(move.id, "pending", destination="h9-never")
    for claimers in (2, 8, 16):
        if claimers > 2:  # fresh pending move each round
            cluster.store.set_move(move.id, "failed", error="round over")
            cluster.store.release_vm("race-1", move.id)
            job = cluster.store.create_move_job(JobKind.MIGRATE, "test",
                                                [Move("", "", "race-1", "h1")])
            move = cluster.store.job_moves(job)[0]
            cluster.store.set_move(move.id, "pending", destination="h9-never")
        assert len(race(cluster.store, move.id, claimers)) == 1


def test_events_and_metrics_follow_a_migration(cluster: Cluster) -> None:
    import urllib.request

    from fleet.cli.processes import free_port

    port = free_port()
    cluster.procs.fleet("metrics", ["metrics", "--port", str(port)], cluster.env)

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def value(text: str, name: str) -> float:
        lines = [ln for ln in text.splitlines() if ln.startswith(name)]
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)

    wait_for(lambda: _answers(scrape), 30, "the metrics endpoint")
    before = scrape()
    cluster.add_vm("obs-1", "h1", memory_mib=1024, dirty=5)
    done = cluster.fleet("vm", "migrate", "obs-1", "--to", "h3", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    after = scrape()
    key = 'fleet_moves_finished_total{state="succeeded"}'
    assert value(after, key) == value(before, key) + 1
    assert value(after, "fleet_migrated_bytes_total") > value(before, "fleet_migrated_bytes_total")
    assert value(after, "fleet_migration_seconds_count") >= 1
    assert 'fleet_agent_up{host="h1"} 1.0' in after
    job_id = json.loads(done.stdout)["id"]
    shown = json.loads(cluster.fleet("events", "--job", job_id, "--json").stdout)
    kinds = [e["kind"] for e in shown]
    assert kinds[0] == "job.created" and "move.claimed" in kinds and kinds[-1] == "job.succeeded"
    assert shown[0]["data"]["by"].startswith("cli:")
    by_host = json.loads(cluster.fleet("events", "--host", "h3", "--json").stdout)
    assert any(e["job"] == job_id for e in by_host)


def _answers(scrape: object) -> bool:
    try:
        scrape()  # type: ignore[operator]
    except OSError:
        return False
    return True


def test_a_job_whose_start_message_was_lost_is_started_by_the_sweeper(
        cluster: Cluster) -> None:
    """The CLI wrote the job (moves and VM lock in one step) and died before sending
    ``fleet.job.start``: the controller's sweeper starts it once it has been pending for
    ``FLEET_PENDING_JOB_AFTER_S``, and the VM moves."""
    cluster.add_vm("lost-1", "h1", memory_mib=512, dirty=5)
    job = cluster.store.create_move_job(JobKind.MIGRATE, "cli:test",
                                        [Move("", "", "lost-1", "h1", target="h2")])
    assert job.state == "pending" and cluster.store.lock_owner("lost-1")
    wait_for(lambda: cluster.store.get_job(job.id).terminal, 60, "the job to start and end")
    assert cluster.store.get_job(job.id).state == "succeeded"
    assert cluster.where("lost-1") == ["h2"] and cluster.store.get_vm("lost-1").host == "h2"
    kinds = [e["kind"] for _, e in cluster.store.events(job.id)]
    assert kinds.count("job.start_recovered") == 1
    assert cluster.store.lock_owner("lost-1") is None


def test_a_destination_failing_its_preflight_is_replaced_not_fatal(cluster: Cluster) -> None:
    cluster.add_vm("pf-1", "h1", memory_mib=512, dirty=0)
    explained = json.loads(cluster.fleet("vm", "explain", "pf-1", "--json").stdout)
    first = explained["host"]
    other = ({"h2", "h3"} - {first}).pop()
    cluster.sim(first).refuse(f"network lan is not active on {first}")
    try:
        done = cluster.fleet("vm", "migrate", "pf-1", "--wait", "--json")
    finally:
        cluster.sim(first).clear_faults()
    assert done.returncode == 0, done.stdout + done.stderr
    job = json.loads(done.stdout)
    (move,) = job["moves"]
    assert (move["state"], move["destination"], move["excluded"]) == ("succeeded", other,
                                                                      [first])
    assert cluster.where("pf-1") == [other]
    refused = [e for _, e in cluster.store.events(job["id"])
               if e["kind"] == "move.preflight_failed"]
    assert [(e["destination"], e["reasons"]) for e in refused] == [
        (first, [f"network lan is not active on {first}"])]


def test_ctrl_c_on_wait_leaves_the_migration_going_and_says_how_to_stop_it(
        cluster: Cluster) -> None:
    import os
    import subprocess
    import sys

    cluster.add_vm("int-1", "h1", memory_mib=8192, dirty=20)
    waiting = subprocess.Popen([sys.executable, "-m", "fleet.cli.main", "vm", "migrate",
                                "int-1", "--to", "h2", "--wait"],
                               env={**os.environ, **cluster.env}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert waiting.stdout is not None
    first = waiting.stdout.readline()  # the job id comes first, before any progress
    assert first.startswith("job "), first
    job_id = first.split()[1]
    wait_for(lambda: cluster.store.get_job(job_id).state == "running", 30, "the job to run")
    waiting.send_signal(signal.SIGINT)
    _, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 130
    assert f"job {job_id} goes on" in err and f"fleet job cancel {job_id}" in err
    wait_for(lambda: cluster.store.get_job(job_id).terminal, 120, "the job to end")
    assert cluster.store.get_job(job_id).state == "succeeded"
    assert cluster.where("int-1") == ["h2"]
