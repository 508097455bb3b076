"""Failover of real lab hosts: power loss, network isolation, and a fence that fails.

h1 and h3 are fenced by the lab's power switch; h2 only by hand (``manual``), so its
fence fails and an operator must confirm. See ``tests/e2e/conftest.py``. Last, h1's
agent alone dies: its libvirtd answers the monitor's witness probe, so h1 is not fenced.
Then one guest dies alone (its QEMU killed): the VM guard starts the HA one in place.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from fleet.lab import lab
from fleet.lab.config import LabConfig
from fleet.lab.guests import create_lab_vm
from fleet.lab.procs import alive, wait_until
from fleet.lab.services import lab_store
from fleet.lab.state import load_state
from tests.e2e.conftest import TIMINGS
from tests.e2e.helpers import clean_guests, domstate, fleet, qemu_pids, running_on

pytestmark = pytest.mark.e2e


def _ha(cfg: LabConfig, host: str, names: list[str]) -> None:
    for i, name in enumerate(names):
        create_lab_vm(cfg, name, host, ha=True, priority=i)


def _everywhere_once(cfg: LabConfig, names: list[str], dead: str) -> bool:
    """Each VM runs on exactly one of the other hosts (the dead one is checked apart)."""
    where = [running_on(cfg, n, skip=dead) for n in names]
    return all(len(w) == 1 for w in where)


def _bring_back(cfg: LabConfig, host: str) -> None:
    lab.up(cfg, agents=True, install=False)
    store = lab_store(cfg)
    wait_until(lambda: store.heartbeat(host) is not None, 60.0, f"{host}'s agent")
    wait_until(lambda: store.get_host(host).state in ("recovered", "active"), 60.0,
               f"{host} recovered")
    done = fleet("host", "activate", host)
    assert done.returncode == 0, done.stderr
    wait_until(lambda: store.get_host(host).state == "active", 30.0, f"{host} active")


def test_power_loss_restarts_ha_vms_elsewhere(fleet_lab: LabConfig) -> None:
    clean_guests(fleet_lab)
    names = ["ha-k1", "ha-k2", "ha-k3"]
    _ha(fleet_lab, "h3", names)
    killed = time.monotonic()
    done = fleet("lab", "kill", "h3")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: _everywhere_once(fleet_lab, names, "h3"), 90.0, "HA VMs elsewhere",
               interval_s=0.2)
    TIMINGS["failover: lab kill -> 3 HA VMs running elsewhere"] = time.monotonic() - killed
    store = lab_store(fleet_lab)
    assert all(store.get_vm(n).host != "h3" for n in names)
    _bring_back(fleet_lab, "h3")
    # h3 came back holding shut-off definitions of VMs now running elsewhere: its agent
    # undefines them, so nobody can start a second copy there by mistake
    wait_until(lambda: all(domstate(fleet_lab, "h3", n) == "absent" for n in names), 30.0,
               "stray definitions on h3 to be undefined")
    assert all(len(running_on(fleet_lab, n)) == 1 for n in names)


def test_isolated_host_is_fenced_before_any_copy_starts(fleet_lab: LabConfig) -> None:
    names = ["ha-i1", "ha-i2"]
    _ha(fleet_lab, "h3", names)
    old = {n: qemu_pids(fleet_lab, "h3", n) for n in names}
    assert all(old.values()), old
    store = lab_store(fleet_lab)
    assert fleet("lab", "isolate", "h3").returncode == 0
    wait_until(lambda: _everywhere_once(fleet_lab, names, "h3"), 90.0, "HA VMs elsewhere",
               interval_s=0.2)
    assert not any(alive(pid) for pids in old.values() for pid in pids)
    audit = [e for _, e in store.journal.audit()]
    fenced = [e["at"] for e in audit if e["kind"] == "host.fenced" and e["host"] == "h3"]
    restarted = [e["at"] for e in audit if e["kind"] == "vm.outcome" and e["vm"] in names
                 and str(e["outcome"]).startswith("running")]
    assert fenced and restarted and max(fenced) < min(restarted)
    assert fleet("lab", "heal", "h3").returncode == 0
    _bring_back(fleet_lab, "h3")


def test_a_vm_already_running_elsewhere_is_adopted_not_restarted(fleet_lab: LabConfig,
                                                                 ) -> None:
    """As if h3 lost power just after its migration of ha-adopt to h1 switched over: the
    guest is migrated by virsh (fleet is not told) while fleet's move sits claimed by a
    runner, then h3 is killed. Failover must not start a second copy: h1's heartbeat
    reports ha-adopt running, so the record follows it there and the move succeeds."""
    from fleet.core.models import JobKind, Move
    from workers.jobs import JobService

    create_lab_vm(fleet_lab, "ha-adopt", "h3", ha=True)
    store = lab_store(fleet_lab)
    job = store.create_move_job(JobKind.MIGRATE, "test", [Move("", "", "ha-adopt", "h3",
                                                               target="h1")])
    sent: list[Move] = []
    JobService(store, sent.append).start(job.id)  # placed, never sent to an agent
    claimed = store.claim_move(sent[0].id, "h3/runner", lease_s=4)
    assert claimed is not None
    assert store.advance_move(claimed.id, claimed.token, "migrating", lease_s=4)
    moved = subprocess.run(["virsh", "-c", fleet_lab.uri("h3"), "migrate", "--live", "--p2p",
                            "--persistent", "--undefinesource", "ha-adopt", fleet_lab.uri("h1")],
                           capture_output=True, text=True, timeout=120, check=False)
    assert moved.returncode == 0, moved.stderr
    assert running_on(fleet_lab, "ha-adopt") == ["h1"]
    assert fleet("lab", "kill", "h3").returncode == 0
    wait_until(lambda: store.get_move(claimed.id).terminal, 90.0, "the orphaned move to end")
    vm = store.get_vm("ha-adopt")
    assert (vm.host, vm.state) == ("h1", "running")
    assert store.get_move(claimed.id).state == "succeeded"
    audit = [e for _, e in store.journal.audit()]
    assert [e["host"] for e in audit if e["kind"] == "vm.adopted" and e["vm"] == "ha-adopt"] \
        == ["h1"]
    assert not [e for e in audit if e["kind"] == "vm.outcome" and e["vm"] == "ha-adopt"
                and str(e["outcome"]).startswith("restarting")]
    assert running_on(fleet_lab, "ha-adopt", skip="h3") == ["h1"]
    _bring_back(fleet_lab, "h3")
    assert running_on(fleet_lab, "ha-adopt") == ["h1"]
    assert domstate(fleet_lab, "h3", "ha-adopt") == "absent"


def test_failed_fence_restarts_nothing_until_confirm_down(fleet_lab: LabConfig) -> None:
    names = ["ha-f1", "ha-f2"]
    _ha(fleet_lab, "h2", names)
    store = lab_store(fleet_lab)
    assert fleet("lab", "kill", "h2").returncode == 0
    wait_until(lambda: store.get_host("h2").state == "fence_failed", 60.0, "fence_failed")
    time.sleep(3)
    assert all(store.get_vm(n).host == "h2" for n in names)
    assert all(running_on(fleet_lab, n) == [] for n in names)
    done = fleet("host", "confirm-down", "h2")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: _everywhere_once(fleet_lab, names, "h2"), 90.0, "VMs after confirm")
    _bring_back(fleet_lab, "h2")


def test_dead_agent_on_a_live_host_is_not_fenced(fleet_lab: LabConfig) -> None:
    names = ["ha-a1"]
    _ha(fleet_lab, "h1", names)
    old = qemu_pids(fleet_lab, "h1", "ha-a1")
    store = lab_store(fleet_lab)
    state = load_state(fleet_lab.path)
    assert state is not None and alive(state.hosts["h1"].agent)
    os.kill(state.hosts["h1"].agent, signal.SIGKILL)  # a pid the lab started

    def silent_alerts() -> list[dict[str, object]]:
        return [e for _, e in store.journal.audit() if e["kind"] == "alert"
                and e.get("alert") == "agent_silent" and e.get("subject") == "h1"]

    wait_until(lambda: bool(silent_alerts()), 30.0, "the agent_silent alert for h1")
    time.sleep(5)  # past down_after_s (5 s) with libvirtd answering the witness
    assert store.get_host("h1").state == "suspect"
    assert not [e for _, e in store.journal.audit()
                if e["kind"] == "host.fenced" and e.get("host") == "h1"]
    assert old and all(alive(pid) for pid in old)  # the guest never stopped
    assert running_on(fleet_lab, "ha-a1") == ["h1"]
    lab.up(fleet_lab, agents=True, install=False)  # the agent comes back
    wait_until(lambda: store.get_host("h1").state == "active", 30.0, "h1 active again")
    assert len(silent_alerts()) == 1


def test_a_killed_qemu_of_an_ha_vm_is_started_again_in_place(fleet_lab: LabConfig) -> None:
    """The VM guard on real QEMU: the guest's QEMU is SIGKILLed on a healthy host (libvirt
    keeps the domain, shut off). The HA guest runs again on the same host in a new QEMU;
    the other is recorded stopped and left shut off. The host is not failed over."""
    create_lab_vm(fleet_lab, "ha-g1", "h1", ha=True)
    create_lab_vm(fleet_lab, "plain-g1", "h1")
    store = lab_store(fleet_lab)
    old = qemu_pids(fleet_lab, "h1", "ha-g1") + qemu_pids(fleet_lab, "h1", "plain-g1")
    assert len(old) == 2
    killed = time.monotonic()
    for pid in old:
        os.kill(pid, signal.SIGKILL)  # QEMUs of guests this test created
    wait_until(lambda: domstate(fleet_lab, "h1", "ha-g1") == "shut off", 10.0,
               "libvirt to see ha-g1's QEMU gone", interval_s=0.1)
    wait_until(lambda: running_on(fleet_lab, "ha-g1") == ["h1"], 60.0,
               "ha-g1 running again", interval_s=0.2)
    TIMINGS["VM guard: QEMU killed -> HA guest running again"] = time.monotonic() - killed
    new = qemu_pids(fleet_lab, "h1", "ha-g1")
    assert len(new) == 1 and not set(new) & set(old) and not any(alive(p) for p in old)
    wait_until(lambda: store.get_vm("plain-g1").state == "stopped", 30.0, "plain-g1 stopped")
    assert store.get_vm("ha-g1").host == "h1" and store.get_vm("ha-g1").state == "running"
    assert domstate(fleet_lab, "h1", "plain-g1") == "shut off"
    assert store.get_host("h1").state == "active"

    def started() -> list[object]:
        return [e["vm"] for _, e in store.journal.audit() if e["kind"] == "vm.started_in_place"]

    wait_until(lambda: bool(started()), 30.0, "the vm.started_in_place event")
    assert started() == ["ha-g1"]


def test_an_operator_stops_moves_and_starts_an_ha_vm(fleet_lab: LabConfig) -> None:
    """``fleet vm stop`` on real libvirt: the OS-less guest ignores the ACPI request, so it
    is powered off after --timeout; the intent was recorded first, so the VM guard leaves
    it shut off. Migrating it moves its definition (nothing runs); ``fleet vm start``
    boots it on its new host in a new QEMU."""
    store = lab_store(fleet_lab)
    old = qemu_pids(fleet_lab, "h1", "ha-g1")
    assert old and store.get_vm("ha-g1").ha
    done = fleet("vm", "stop", "ha-g1", "--timeout", "1")
    assert done.returncode == 0, done.stderr
    assert domstate(fleet_lab, "h1", "ha-g1") == "shut off"
    assert store.get_vm("ha-g1").state == "stopped" and not any(alive(p) for p in old)
    time.sleep(5)  # more than twice the guard's grace: it must not start it again
    assert domstate(fleet_lab, "h1", "ha-g1") == "shut off"
    done = fleet("vm", "migrate", "ha-g1", "--to", "h2", "--wait")  # moves by its definition
    assert done.returncode == 0, done.stderr
    assert domstate(fleet_lab, "h2", "ha-g1") == "shut off"
    assert domstate(fleet_lab, "h1", "ha-g1") == "absent"
    assert (store.get_vm("ha-g1").host, store.get_vm("ha-g1").state) == ("h2", "stopped")
    done = fleet("vm", "start", "ha-g1")
    assert done.returncode == 0, done.stderr
    assert running_on(fleet_lab, "ha-g1") == ["h2"]
    assert store.get_vm("ha-g1").state == "running"
    assert not set(qemu_pids(fleet_lab, "h2", "ha-g1")) & set(old)
