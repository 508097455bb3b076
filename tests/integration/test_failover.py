"""Failover on the sim fleet with real processes: monitor, controller, agents.

A sim host "loses power" (its guests die, its agent falls silent for it); the monitor
must fence it through the sim fence agent before any HA VM restarts elsewhere.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from fleet.cli.metrics import FleetCollector
from fleet.cli.processes import wait_for
from fleet.core.models import Host
from tests.integration.conftest import Cluster

pytestmark = pytest.mark.integration

FAILOVER_ENV = {
    "FLEET_FAILOVER_SUSPECT_AFTER_S": "1.5", "FLEET_FAILOVER_DOWN_AFTER_S": "2.5",
    "FLEET_FAILOVER_FENCE_TIMEOUT_S": "3", "FLEET_FAILOVER_FENCE_RETRY_S": "1",
    "FLEET_FAILOVER_FENCE_ATTEMPTS": "2", "FLEET_MONITOR_INTERVAL_S": "0.25",
}


@pytest.fixture(scope="module")
def cluster_hosts() -> tuple[str, ...]:
    return ("h1", "h2", "h3", "h4", "h5")


@pytest.fixture(scope="module")
def cluster_env() -> dict[str, str]:
    fence = {"*": {"agent": "sim", "host": "{host}"},
             "h3": {"agent": "sim", "host": "{host}", "fail": True}}
    return {**FAILOVER_ENV, "FLEET_FENCE": json.dumps(fence)}


MONITORS: dict[str, subprocess.Popen[bytes]] = {}


@pytest.fixture(scope="module")
def failover(cluster: Cluster) -> Iterator[Cluster]:
    for i in range(2):
        MONITORS[f"m{i}"] = cluster.procs.fleet(f"monitor-{i}", ["monitor", "--name", f"m{i}"],
                                                cluster.env)
    yield cluster
    for proc in MONITORS.values():
        cluster.procs.stop(proc)


def _restarted(c: Cluster, names: list[str], dead: str) -> bool:
    vms = {v.name: v for v in c.store.list_vms()}
    return all(vms[n].host != dead and vms[n].state == "running"
               and c.where(n) == [vms[n].host] for n in names)


def test_power_loss_restarts_ha_vms_elsewhere(failover: Cluster) -> None:
    c = failover
    names = [f"ha-{i}" for i in range(3)]
    for i, name in enumerate(names):
        c.add_vm(name, "h1", memory_mib=512)
        c.store.update_vm(name, ha=True, priority=i)
    c.add_vm("plain-1", "h1", memory_mib=256)
    killed = time.time()
    c.sim("h1").power_off()
    wait_for(lambda: _restarted(c, names, "h1"), 40, "HA VMs running elsewhere")
    took = time.time() - killed
    assert took < 20
    assert c.store.get_vm("plain-1").state == "down"
    assert c.store.get_host("h1").state in ("recovering", "recovered")
    events = [e for _, e in c.store.journal.audit()]
    fenced = next(e["at"] for e in events if e["kind"] == "host.fenced" and e["host"] == "h1")
    started = [e["at"] for e in events if e["kind"] == "vm.outcome"
               and str(e["outcome"]).startswith("running")]
    assert started and min(started) > fenced  # nothing restarted before the fence
    job_id = c.store.failover.job("h1")
    assert job_id is not None
    wait_for(lambda: c.store.get_job(job_id).terminal, 20, "the failover job to end")
    job = c.store.get_job(job_id)
    assert job.state == "succeeded"
    assert set(job.summary["vms"]) >= {*names, "plain-1"}


def test_failed_fence_restarts_nothing_until_confirmed(failover: Cluster) -> None:
    c = failover
    c.add_vm("ha-h3", "h3", memory_mib=512)
    c.store.update_vm("ha-h3", ha=True)
    c.sim("h3").power_off()  # h3's fence agent is configured to fail
    wait_for(lambda: c.store.get_host("h3").state == "fence_failed", 30, "fence_failed")
    time.sleep(2)
    assert c.store.get_vm("ha-h3").host == "h3"  # nothing restarted
    done = c.fleet("host", "confirm-down", "h3")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: _restarted(c, ["ha-h3"], "h3"), 30, "the VM after confirm-down")


def test_leader_dies_mid_failover_and_the_standby_finishes(failover: Cluster) -> None:
    c = failover
    names = ["ha-l1", "ha-l2"]
    for name in names:
        c.add_vm(name, "h4", memory_mib=512)
        c.store.update_vm(name, ha=True)
    c.sim("h4").power_off()
    wait_for(lambda: c.store.get_host("h4").state in ("suspect", "down", "fencing"), 20,
             "h4 to be noticed")
    lease = c.store.failover.lease()
    assert lease is not None
    leader = lease.holder.split("/")[0]
    MONITORS[leader].send_signal(signal.SIGKILL)
    MONITORS[leader].wait(10)
    wait_for(lambda: _restarted(c, names, "h4"), 60, "the standby to finish the failover")
    after = c.store.failover.lease()
    assert after is not None and after.holder.split("/")[0] != leader
    assert after.epoch > lease.epoch

    def restarts() -> list[str]:
        return sorted(e["vm"] for _, e in c.store.journal.audit() if e["kind"] == "vm.outcome"
                      and e["vm"] in names and str(e["outcome"]).startswith("running"))

    # a restart task writes its outcome just after the domain starts: wait for both
    wait_for(lambda: len(restarts()) >= len(names), 20, "both restart outcomes")
    assert restarts() == sorted(names)  # each started once


def _alerts(c: Cluster, kind: str, subject: str) -> list[dict[str, object]]:
    return [e for _, e in c.store.journal.audit()
            if e["kind"] == "alert" and e.get("alert") == kind and e.get("subject") == subject]


def _scrape(c: Cluster) -> str:
    registry = CollectorRegistry()
    registry.register(FleetCollector(c.store))
    return generate_latest(registry).decode()


def _accept_all(listener: socket.socket) -> None:
    """Answer like a daemon would: accept every probe and hang up, until closed."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.close()


def test_dead_agent_on_a_live_host_is_not_fenced(failover: Cluster) -> None:
    """The agent of w1 is killed; its "libvirtd" (a real listening socket named by its
    migration URI) still answers the monitors' witness probe, so w1 is not fenced and
    its VM stays. When the host stops answering too, it is fenced and the VM recovers."""
    c = failover
    listener = socket.create_server(("127.0.0.1", 0), backlog=256)
    port = listener.getsockname()[1]
    threading.Thread(target=_accept_all, args=(listener,), daemon=True).start()
    c.store.put_host(Host("w1", vcpus=16, memory_mib=65536,
                          migration_uri=f"qemu+tcp://127.0.0.1:{port}/system"))
    c.start_agent("w1", "w1")
    wait_for(lambda: c.store.heartbeat("w1") is not None, 30, "w1's agent")
    c.add_vm("ha-w1", "w1", memory_mib=512)
    c.store.update_vm("ha-w1", ha=True)
    try:
        c.agents["w1"].send_signal(signal.SIGKILL)
        c.agents["w1"].wait(10)
        wait_for(lambda: bool(_alerts(c, "agent_silent", "w1")), 20, "the agent_silent alert")
        time.sleep(4)  # well past down_after_s (2.5 s) with the witness answering
        assert c.store.get_host("w1").state == "suspect"
        assert c.store.get_vm("ha-w1").host == "w1" and c.where("ha-w1") == ["w1"]
        assert not [e for _, e in c.store.journal.audit()
                    if e["kind"] == "host.fenced" and e.get("host") == "w1"]
        assert len(_alerts(c, "agent_silent", "w1")) == 1
        assert 'fleet_alerts_total{kind="agent_silent"} 1.0' in _scrape(c)
        # the fence agent shown is the one the controller runs, whatever the CLI's own says
        shown = c.fleet("host", "show", "w1", "--json", env={"FLEET_FENCE": "{}"})
        assert shown.returncode == 0, shown.stderr
        detail = json.loads(shown.stdout)
        assert detail["failover"]["state"] == "suspect"
        assert "witness" in detail["failover"]["detail"]
        assert detail["heartbeat"] is None and detail["fence_agent"].startswith(
            "sim (as run by controller@")
        assert detail["vms"] == ["ha-w1"] and detail["vm_states"] == {"ha-w1": "running"}
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept loop; nothing answers now
        listener.close()
    wait_for(lambda: _restarted(c, ["ha-w1"], "w1"), 40, "the VM after the witness fell silent")
    assert c.store.get_host("w1").state in ("recovering", "recovered")


def test_a_crashed_ha_vm_is_started_again_on_its_host(failover: Cluster) -> None:
    """The VM guard: a guest dies alone on a live host (its domain stays, crashed). The
    HA one is started again in place by the real monitor and agent; the other is
    recorded stopped. The host is never touched."""
    c = failover
    c.add_vm("guard-ha", "h5", memory_mib=256)
    c.store.update_vm("guard-ha", ha=True)
    c.add_vm("guard-plain", "h5", memory_mib=256)
    crashed = time.time()
    c.sim("h5").crash("guard-ha")
    c.sim("h5").crash("guard-plain")
    wait_for(lambda: c.sim("h5").lookup("guard-ha").state.value == "running", 30,
             "guard-ha to run again")
    took = time.time() - crashed
    wait_for(lambda: c.store.get_vm("guard-plain").state == "stopped", 30,
             "guard-plain to be recorded stopped")
    assert took >= 2.0  # not before the guard's grace (FLEET_VMGUARD_GRACE_S, 2 s)
    assert c.store.get_vm("guard-ha").host == "h5" and c.where("guard-ha") == ["h5"]
    assert c.store.get_vm("guard-ha").state == "running"
    assert c.sim("h5").lookup("guard-plain").state.value == "crashed"  # not HA: left
    assert c.store.get_host("h5").state == "active"

    def started() -> list[tuple[object, ...]]:
        return [(e["vm"], e["host"], e["attempt"]) for _, e in c.store.journal.audit()
                if e["kind"] == "vm.started_in_place"]

    wait_for(lambda: bool(started()), 10, "the vm.started_in_place event")
    assert started() == [("guard-ha", "h5", 1)]
    assert 'fleet_vm_restarts_total{outcome="started"} 1.0' in _scrape(c)
    shown = json.loads(c.fleet("vm", "show", "guard-ha", "--json").stdout)
    assert len(shown["guard"]["restarts"]) == 1 and not shown["guard"]["gave_up"]


def test_an_operator_stops_and_starts_an_ha_vm(failover: Cluster) -> None:
    """``fleet vm stop`` records the intent before the guest stops, so the VM guard leaves
    the HA VM down; ``fleet vm start`` boots it on its host again. Bad requests exit 2."""
    c = failover
    c.add_vm("power-ha", "h5", memory_mib=256)
    c.store.update_vm("power-ha", ha=True)
    done = c.fleet("vm", "stop", "power-ha", "--force", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["detail"] == "stopped on h5"
    assert c.store.get_vm("power-ha").state == "stopped"
    assert c.sim("h5").lookup("power-ha").state.value == "shutoff"
    time.sleep(4)  # twice the guard's grace: it must not start what an operator stopped
    assert c.sim("h5").lookup("power-ha").state.value == "shutoff"
    again = c.fleet("vm", "stop", "power-ha")
    assert again.returncode == 0, again.stderr  # stopping a stopped VM is harmless
    done = c.fleet("vm", "start", "power-ha")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "power-ha: running on h5"
    assert c.sim("h5").lookup("power-ha").state.value == "running"
    assert c.store.get_vm("power-ha").state == "running"
    by = [e["by"] for _, e in c.store.journal.audit() if e["kind"] in ("vm.stopped",
                                                                       "vm.started")]
    assert len(by) == 3 and all(b.startswith("cli:") for b in by)
    for args in (["vm", "stop", "no-such-vm"], ["vm", "start", "bad name!"],
                 ["vm", "stop", "power-ha", "--timeout", "-1"]):
        bad = c.fleet(*args)
        assert bad.returncode == 2, (args, bad.stderr)
        assert len(bad.stderr.strip().splitlines()) == 1
    assert c.store.get_vm("power-ha").state == "running"


def _ha_vm_on_a_new_host(c: Cluster, vm: str, host: str) -> None:
    """A new host ``host`` with its own agent, holding the HA VM ``vm``."""
    c.store.put_host(Host(host, vcpus=16, memory_mib=65536))
    c.start_agent(host, host)
    wait_for(lambda: c.store.heartbeat(host) is not None, 30, f"{host}'s agent")
    c.add_vm(vm, host, memory_mib=256)
    c.store.update_vm(vm, ha=True)


def test_a_vm_that_switched_over_before_its_source_died_is_adopted_not_restarted(
        failover: Cluster) -> None:
    """w2 dies after its migration of ha-mv to h5 switched over but before anything was
    committed: fleet records ha-mv on w2, its runner died with w2. Failover must not
    start a second copy: it finds ha-mv running on h5 (h5's heartbeat says so), records
    it there (settling the orphaned move as succeeded), and restarts nothing."""
    from fleet.core.hypervisor import MigrationParams, MigrationTarget
    from fleet.core.models import JobKind, Move
    from workers.jobs import JobService

    c = failover
    _ha_vm_on_a_new_host(c, "ha-mv", "w2")
    job = c.store.create_move_job(JobKind.MIGRATE, "test",
                                  [Move("", "", "ha-mv", "w2", target="h5")])
    sent: list[Move] = []
    JobService(c.store, sent.append).start(job.id)  # placed, never sent to an agent
    claimed = c.store.claim_move(sent[0].id, "w2/runner", lease_s=3)
    assert claimed is not None
    assert c.store.advance_move(claimed.id, claimed.token, "migrating", lease_s=3)
    c.sim("w2").migrate("ha-mv", MigrationTarget("h5"), MigrationParams())
    assert c.where("ha-mv") == ["h5"]
    c.sim("w2").power_off()
    wait_for(lambda: c.store.get_move(claimed.id).terminal, 60, "the orphaned move to end")
    vm = c.store.get_vm("ha-mv")
    assert (vm.host, vm.state) == ("h5", "running")
    assert c.store.get_move(claimed.id).state == "succeeded"
    audit = [e for _, e in c.store.journal.audit()]
    fenced = [e["at"] for e in audit if e["kind"] == "host.fenced" and e.get("host") == "w2"]
    adopted = [e for e in audit if e["kind"] == "vm.adopted" and e["vm"] == "ha-mv"]
    assert fenced  # the orphaned move is settled before any restart is considered
    assert all(e["host"] == "h5" for e in adopted)
    assert not [e for e in audit if e["kind"] == "vm.outcome" and e["vm"] == "ha-mv"
                and str(e["outcome"]).startswith("restarting")]
    time.sleep(2)  # a stray restart would show by now
    assert c.where("ha-mv") == ["h5"]
    wait_for(lambda: c.store.get_job(job.id).terminal, 30, "the migrate job to end")
    assert c.store.get_job(job.id).state == "succeeded"


def _queued(c: Cluster, queue: str) -> int:
    """Messages waiting in Celery queue ``queue`` (kombu keeps each queue in a list)."""
    return int(c.store.r.llen(c.store.keys.celery + queue))


def test_a_move_dispatched_before_its_source_was_fenced_does_nothing_later(
        failover: Cluster) -> None:
    """ha-late's move w4→h5 is dispatched while w4's agent is dead, so its message waits
    in w4's queue. w4 loses power, is fenced, and ha-late restarts elsewhere. When w4 is
    back (powered on, activated, agent started) the agent consumes the old message: the
    move already failed when w4 was fenced, so nothing is recorded or started on w4 and
    ha-late keeps running once, where failover put it."""
    c = failover
    _ha_vm_on_a_new_host(c, "ha-late", "w4")
    c.agents["w4"].send_signal(signal.SIGKILL)
    c.agents["w4"].wait(10)
    done = c.fleet("vm", "migrate", "ha-late", "--to", "h5")
    assert done.returncode == 0, done.stderr
    job = c.store.get_job(done.stdout.strip())
    wait_for(lambda: _queued(c, "host.w4") == 1, 30, "the move's message in w4's queue")
    (move,) = c.store.job_moves(job)
    c.sim("w4").power_off()
    wait_for(lambda: _restarted(c, ["ha-late"], "w4"), 60, "ha-late restarted elsewhere")
    wait_for(lambda: c.store.get_move(move.id).terminal, 30, "the move to end")
    assert c.store.get_move(move.id).state == "failed"
    assert "fenced" in c.store.get_move(move.id).error
    home = c.store.get_vm("ha-late").host

    c.sim("w4").power_on()
    back = c.fleet("host", "activate", "w4")
    assert back.returncode == 0, back.stderr
    c.start_agent("w4", "w4")
    wait_for(lambda: _queued(c, "host.w4") == 0, 30, "w4's agent to take the old message")
    time.sleep(3)  # the message's task, a guard round and a stray sweep have run by now
    vm = c.store.get_vm("ha-late")
    assert (vm.host, vm.state) == (home, "running")
    running = [h.name for h in c.store.list_hosts()
               if any(d.name == "ha-late" and d.state.value == "running"
                      for d in c.sim(h.name).list_domains())]
    assert running == [home]
    assert c.store.get_move(move.id).state == "failed"
    assert c.store.get_job(job.id).terminal



def test_sim_commands_create_a_vm_and_cut_a_hosts_power(failover: Cluster) -> None:
    """``fleet sim vm create`` starts a guest on a sim host; ``fleet sim power off`` makes
    that host die as a real one would (fenced, its HA VM restarted elsewhere); ``on``
    gives it power back. Bad names are one line, exit 2, nothing written."""
    c = failover
    c.store.put_host(Host("s1", vcpus=16, memory_mib=65536, driver="sim"))
    c.start_agent("s1", "s1")
    wait_for(lambda: c.store.heartbeat("s1") is not None, 30, "s1's agent")
    made = c.fleet("sim", "vm", "create", "sim-ha", "--host", "s1", "--ha",
                   "--memory-mib", "512", "--priority", "5", "--json")
    assert made.returncode == 0, made.stderr
    record = json.loads(made.stdout)
    assert (record["host"], record["ha"], record["priority"]) == ("s1", True, 5)
    assert c.where("sim-ha") == ["s1"] and c.store.get_vm("sim-ha").memory_mib == 512
    for args, needle in ((["sim", "vm", "create", "sim-ha", "--host", "s1"], "already exists"),
                         (["sim", "vm", "create", "sim-x", "--host", "nohost"], "nohost"),
                         (["sim", "power", "off", "bad name"], "host"),
                         (["sim", "power", "off", "nohost"], "nohost")):
        bad = c.fleet(*args)
        assert bad.returncode == 2 and needle in bad.stderr, bad.stdout + bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    assert c.store.find_vm("sim-x") is None and c.sim("s1").powered()
    off = c.fleet("sim", "power", "off", "s1")
    assert off.returncode == 0 and "s1 is off" in off.stdout, off.stderr
    assert not c.sim("s1").powered()
    wait_for(lambda: _restarted(c, ["sim-ha"], "s1"), 40, "sim-ha restarted elsewhere")
    assert [e for _, e in c.store.journal.audit()
            if e["kind"] == "host.fenced" and e.get("host") == "s1"]
    on = c.fleet("sim", "power", "on", "s1")
    assert on.returncode == 0 and c.sim("s1").powered(), on.stderr
