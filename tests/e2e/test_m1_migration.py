"""Live migration through fleet on real QEMU guests (issue: real live migration).

Runs on the shared lab with every fleet process up (fixture ``fleet_lab``).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from fleet.lab import lab
from fleet.lab.config import LabConfig
from fleet.lab.guests import create_lab_vm
from fleet.lab.procs import alive, wait_until
from fleet.lab.services import lab_store, start_agents
from fleet.lab.state import save_state
from fleet.store import Store
from tests.e2e.helpers import domstate, fleet, lab_state, running_on

pytestmark = pytest.mark.e2e
BOOT_S = 8.0  # an OS guest boots under TCG and fills its memory


def _move(store: Store, job_id: str) -> object:
    return store.job_moves(store.get_job(job_id))[0]


def _submit(name: str, *args: str) -> str:
    done = fleet("vm", "migrate", name, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _policy(name: str, *args: str) -> None:
    done = fleet("vm", "policy", name, *args)
    assert done.returncode == 0, done.stderr


def _wait_migrating(store: Store, job_id: str, percent: float = 5.0) -> None:
    def going() -> bool:
        move = store.job_moves(store.get_job(job_id))[0]
        return move.state == "migrating" and move.progress.get("percent", 0) >= percent

    wait_until(going, 60.0, f"job {job_id} to be migrating")


def _wait_done(store: Store, job_id: str, timeout: float = 180.0) -> None:
    wait_until(lambda: store.get_job(job_id).terminal, timeout, f"job {job_id} to end")


def test_migrate_wait_moves_a_guest_and_virsh_agrees(fleet_lab: LabConfig) -> None:
    create_lab_vm(fleet_lab, "mig-tiny", "h1")
    done = fleet("vm", "migrate", "mig-tiny", "--to", "h2", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert domstate(fleet_lab, "h2", "mig-tiny") == "running"
    assert domstate(fleet_lab, "h1", "mig-tiny") == "absent"
    assert lab_store(fleet_lab).get_vm("mig-tiny").host == "h2"


def test_progress_reaches_events_and_task_state(fleet_lab: LabConfig) -> None:
    from tasks.app import app

    store = lab_store(fleet_lab)
    create_lab_vm(fleet_lab, "mig-os", "h1", os_guest=True, dirty_mib_s=8)
    _policy("mig-os", "--bandwidth-mib-s", "30")
    time.sleep(BOOT_S)
    job_id = _submit("mig-os", "--to", "h3")
    wait_until(lambda: bool(_move(store, job_id).task_id), 30.0, "the task to claim")  # type: ignore[attr-defined]
    task = app.AsyncResult(_move(store, job_id).task_id)  # type: ignore[attr-defined]
    seen: list[float] = []
    while not store.get_job(job_id).terminal:
        if task.state == "PROGRESS" and isinstance(task.info, dict):
            processed = float(task.info["processed_mib"])
            if not seen or processed != seen[-1]:
                seen.append(processed)
        time.sleep(0.3)
    assert store.get_job(job_id).state == "succeeded"
    assert len(seen) >= 3 and seen == sorted(seen), seen
    events = [e for _, e in store.events(job_id) if e["kind"] == "move.progress"]
    processed = [e["processed_mib"] for e in events]
    assert len(processed) >= 3 and processed[-1] > processed[0]
    assert {"percent", "mib_s", "remaining_mib", "iteration", "eta_s", "downtime_ms"} \
        <= set(events[-1])
    assert running_on(fleet_lab, "mig-os") == ["h3"]


@pytest.mark.parametrize("postcopy", [False, True], ids=["forbidden", "allowed"])
def test_budget_overrun_aborts_or_goes_postcopy(fleet_lab: LabConfig, postcopy: bool) -> None:
    store = lab_store(fleet_lab)
    name = f"mig-pc-{int(postcopy)}"
    create_lab_vm(fleet_lab, name, "h1", os_guest=True, dirty_mib_s=32)
    _policy(name, "--bandwidth-mib-s", "4", "--timeout-min-s", "8", "--timeout-per-gib-s",
            "1", "--no-auto-converge", "--postcopy" if postcopy else "--no-postcopy")
    time.sleep(BOOT_S)
    job_id = _submit(name, "--to", "h2")
    _wait_done(store, job_id)
    move = store.job_moves(store.get_job(job_id))[0]
    if postcopy:
        assert move.state == "succeeded", move.error
        assert running_on(fleet_lab, name) == ["h2"]
    else:
        assert move.state == "failed" and "aborted by policy" in move.error
        assert running_on(fleet_lab, name) == ["h1"]
        assert domstate(fleet_lab, "h2", name) == "absent"


def test_destination_libvirtd_killed_mid_migration(fleet_lab: LabConfig) -> None:
    store = lab_store(fleet_lab)
    create_lab_vm(fleet_lab, "mig-dk", "h1", os_guest=True, dirty_mib_s=8)
    _policy("mig-dk", "--bandwidth-mib-s", "8", "--timeout-min-s", "120")
    time.sleep(BOOT_S)
    job_id = _submit("mig-dk", "--to", "h3")
    _wait_migrating(store, job_id)
    os.kill(lab_state(fleet_lab).host("h3").libvirtd, signal.SIGKILL)
    _wait_done(store, job_id)
    move = store.job_moves(store.get_job(job_id))[0]
    assert move.state == "failed" and "h3" in move.error, move.error
    assert store.get_job(job_id).state == "failed"
    assert running_on(fleet_lab, "mig-dk") == ["h1"]
    lab.up(fleet_lab, agents=True, install=False)  # libvirtd of h3 comes back
    wait_until(lambda: domstate(fleet_lab, "h3", "mig-dk") == "absent", 30.0,
               "h3 to hold no copy")
    assert running_on(fleet_lab, "mig-dk") == ["h1"]


def test_source_agent_killed_mid_migration_is_reconciled(fleet_lab: LabConfig) -> None:
    store = lab_store(fleet_lab)
    create_lab_vm(fleet_lab, "mig-ak", "h1", os_guest=True, dirty_mib_s=4)
    _policy("mig-ak", "--bandwidth-mib-s", "12", "--timeout-min-s", "120")
    time.sleep(BOOT_S)
    job_id = _submit("mig-ak", "--to", "h2")
    _wait_migrating(store, job_id, percent=10)
    state = lab_state(fleet_lab)
    victim = state.host("h1").agent
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: not alive(victim), 10.0, "the agent to die")
    start_agents(fleet_lab, state)  # the agent restarts at once; libvirt goes on meanwhile
    assert state.host("h1").agent != victim
    save_state(state)
    _wait_done(store, job_id)
    kinds = [e["kind"] for _, e in store.events(job_id)]
    assert kinds.count("move.claimed") == 1  # never a second migration
    assert "move.taken_over" in kinds
    move = store.job_moves(store.get_job(job_id))[0]
    seen = [e for _, e in store.events(job_id)
            if e["kind"] in ("move.sighted", f"move.{move.state}")]
    assert running_on(fleet_lab, "mig-ak") == [store.get_vm("mig-ak").host], (move.error, seen)
    if move.state == "succeeded":
        assert store.get_vm("mig-ak").host == "h2"
    else:
        assert store.get_vm("mig-ak").host == "h1", move.error
