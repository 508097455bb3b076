"""Host drain on the sim fleet: plan, bounded concurrency, anti-affinity, return, cancel."""

from __future__ import annotations

import json

import pytest

from fleet.cli.processes import wait_for
from tests.integration.conftest import Cluster

pytestmark = pytest.mark.integration


def _vm(cluster: Cluster, name: str, memory: int, group: str = "", rule: str = "") -> None:
    cluster.add_vm(name, "h1", memory_mib=memory, dirty=5)
    if group:
        cluster.store.update_vm(name, group=group, rule=rule)


def test_drain_and_return(cluster: Cluster) -> None:
    for i in range(2):
        _vm(cluster, f"dr-{i}", 1024)
    _vm(cluster, "dr-a", 512, group="pair", rule="anti-affinity")
    _vm(cluster, "dr-b", 512, group="pair", rule="anti-affinity")
    _vm(cluster, "dr-off", 256)  # a stopped VM moves too, by its definition
    cluster.sim("h1").shutdown("dr-off", 0)
    cluster.store.update_vm("dr-off", state="stopped")
    plan = json.loads(cluster.fleet("host", "drain", "h1", "--dry-run", "--json").stdout)
    on_h1 = {v.name for v in cluster.store.list_vms() if v.host == "h1"}
    assert {m["vm"] for m in plan["moves"]} == on_h1 and plan["unplaced"] == []
    assert cluster.store.get_host("h1").state == "active"  # a dry run changes nothing

    done = cluster.fleet("host", "drain", "h1", "--concurrency", "2", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["state"] == "succeeded" and set(job["summary"]["moved"]) == on_h1
    assert job["summary"]["planned"] is True and job["summary"]["plan_ms"] >= 0
    assert cluster.store.get_host("h1").state == "maintenance"
    assert cluster.sim("h1").list_domains() == []
    assert cluster.where("dr-a") != cluster.where("dr-b")
    off = cluster.store.get_vm("dr-off")
    assert off.state == "stopped" and cluster.where("dr-off") == [off.host] != ["h1"]
    assert cluster.sim(off.host).lookup("dr-off").state.value == "shutoff"
    events = cluster.store.events(job["id"])
    assert _max_in_flight(events) <= 2

    back = cluster.fleet("host", "activate", "h1", "--return", "--wait", "--json")
    assert back.returncode == 0, back.stderr
    assert {d.name for d in cluster.sim("h1").list_domains()} == on_h1
    assert cluster.sim("h1").lookup("dr-off").state.value == "shutoff"
    assert cluster.store.get_vm("dr-off").state == "stopped"
    assert cluster.store.get_host("h1").state == "active"


def test_hosts_drained_together_send_nothing_to_each_other(cluster: Cluster) -> None:
    cluster.add_vm("two-a", "h1", memory_mib=512, dirty=5)
    cluster.add_vm("two-b", "h2", memory_mib=4096, dirty=5)  # a few seconds to move
    on = {h: {v.name for v in cluster.store.list_vms() if v.host == h} for h in ("h1", "h2")}
    try:
        every = cluster.fleet("host", "drain", "h1", "h2", "h3")
        assert every.returncode == 2 and "no other host" in every.stderr, every.stderr
        assert {h.state for h in cluster.store.list_hosts()} == {"active"}
        started = cluster.fleet("host", "drain", "h1", "h2")
        job_id = started.stdout.strip()
        assert started.returncode == 0 and job_id, started.stderr
        assert cluster.fleet("host", "drain", "h2", "h1").stdout.strip() == job_id
        overlap = cluster.fleet("host", "drain", "h1")
        assert overlap.returncode == 2 and f"already draining in job {job_id}" in overlap.stderr
        done = cluster.fleet("job", "watch", job_id, "--json")
        job = json.loads(done.stdout)
        assert job["target"] == "h1,h2" and job["state"] == "failed" and done.returncode == 1
        # the anti-affinity pair of h1 cannot both go to h3, the only host left
        [stuck] = [m for m in job["moves"] if m["state"] == "failed"]
        assert stuck["vm"] in ("dr-a", "dr-b") and stuck["source"] == "h1"
        assert "state rejects 1 of 2 hosts (e.g. h2:" in stuck["error"]
        assert "anti-affinity rejects 1 of 2 hosts (e.g. h3:" in stuck["error"], stuck["error"]
        moves = {m["vm"]: (m["source"], m["destination"]) for m in job["moves"]
                 if m["state"] == "succeeded"}
        assert moves == {**{vm: ("h1", "h3") for vm in on["h1"] - {stuck["vm"]}},
                         **{vm: ("h2", "h3") for vm in on["h2"]}}
        assert {cluster.store.get_host(h).state for h in ("h1", "h2")} == {"maintenance"}
        back = cluster.fleet("host", "activate", "h2", "--return", "--wait", "--json")
        assert back.returncode == 0, back.stderr
        assert {d.name for d in cluster.sim("h2").list_domains()} == on["h2"]
        assert [d.name for d in cluster.sim("h1").list_domains()] == [stuck["vm"]]
        assert cluster.fleet("vm", "migrate", "two-b", "--to", "h3", "--wait").returncode == 0
    finally:
        cluster.fleet("host", "activate", "h1", "--return", "--wait")
        cluster.fleet("host", "activate", "h2")


def _max_in_flight(events: list[tuple[str, dict[str, object]]]) -> int:
    live: set[object] = set()
    peak = 0
    for _, e in events:
        if e["kind"] == "move.dispatched":
            live.add(e["move"])
        elif e["kind"] in ("move.succeeded", "move.failed", "move.cancelled", "move.pending"):
            live.discard(e["move"])
        peak = max(peak, len(live))
    return peak


def test_second_drain_returns_the_running_job_and_cancel_stops_it(cluster: Cluster) -> None:
    for i in range(3):
        cluster.add_vm(f"slow-{i}", "h2", memory_mib=12288, dirty=20)
    first = cluster.fleet("host", "drain", "h2", "--concurrency", "1")
    second = cluster.fleet("host", "drain", "h2")
    assert first.returncode == 0 and first.stdout.strip() == second.stdout.strip()
    job_id = first.stdout.strip()
    wait_for(lambda: any(m.state == "migrating"
                         for m in cluster.store.job_moves(cluster.store.get_job(job_id))),
             30, "a move under way")
    assert cluster.fleet("job", "cancel", job_id).returncode == 0
    wait_for(lambda: cluster.store.get_job(job_id).terminal, 60, "the job to end")
    job = cluster.store.get_job(job_id)
    assert job.state == "cancelled"
    states = {m.vm: (m.state, m.error) for m in cluster.store.job_moves(job)}
    assert sorted(states) == ["slow-0", "slow-1", "slow-2"], states
    assert all(state == "cancelled" for state, _ in states.values()), states
    for i in range(3):
        assert cluster.where(f"slow-{i}") == ["h2"]
    assert cluster.store.claimed("h1") == (0, 0) and cluster.store.claimed("h3") == (0, 0)
    cluster.fleet("host", "activate", "h2")


def test_drain_bad_input(cluster: Cluster) -> None:
    for args in (["host", "drain", "h99"], ["host", "drain", "bad host"],
                 ["host", "drain", "h3", "--concurrency", "0"]):
        done = cluster.fleet(*args)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, args


def test_explain_says_why_hosts_are_rejected(cluster: Cluster) -> None:
    cluster.add_vm("ex-1", "h3", memory_mib=1024)
    cluster.store.set_host_state("h2", "maintenance")
    try:
        shown = json.loads(cluster.fleet("vm", "explain", "ex-1", "--json").stdout)
    finally:
        cluster.store.set_host_state("h2", "active")
    assert shown["host"] == "h1"
    assert "maintenance" in " ".join(shown["rejected"]["h2"])
    assert "h3" in shown["rejected"]  # its own host is excluded
    bad = cluster.fleet("vm", "explain", "nope")
    assert bad.returncode == 2 and "unknown VM" in bad.stderr


def test_a_drain_with_nowhere_to_go_is_refused_and_changes_nothing(cluster: Cluster) -> None:
    _vm(cluster, "lone-1", 256)
    others = [h.name for h in cluster.store.list_hosts() if h.name != "h1"]
    for host in others:
        cluster.store.set_host_state(host, "maintenance")
    try:
        jobs_before = cluster.store.r.zcard(cluster.store.keys.jobs)
        dry = cluster.fleet("host", "drain", "h1", "--dry-run", "--json")
        assert dry.returncode == 1  # a plan that leaves VMs behind is not a success
        assert json.loads(dry.stdout)["unplaced"]
        done = cluster.fleet("host", "drain", "h1", "--wait")
        assert done.returncode == 2, done.stdout + done.stderr
        assert "no other host is active" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert cluster.store.get_host("h1").state == "active"
        assert cluster.store.r.zcard(cluster.store.keys.jobs) == jobs_before
    finally:
        for host in others:
            cluster.store.set_host_state(host, "active")

