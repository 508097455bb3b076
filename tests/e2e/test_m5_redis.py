"""The lab's Redis SIGKILLed in the middle of a drain of real QEMU guests.

Two Linux guests migrate off h1 at 32 MiB/s (several seconds each) while Redis dies and
comes back 2 s later from its append-only file. The agents keep their in-flight migrate
tasks (the broker reconnects; libvirt finishes the migrations meanwhile), nothing that
was running is lost, the job and VM records survive the restart, and once the drain
ends every record names the one host where libvirt runs the guest.
"""

from __future__ import annotations

import time

import pytest

from fleet.core.models import Move
from fleet.lab.config import LabConfig
from fleet.lab.faults import CopyWatch, dead_processes, kill_service, restart_redis
from fleet.lab.guests import create_lab_vm
from fleet.lab.procs import wait_until
from fleet.lab.services import lab_store
from fleet.store import Store
from tests.e2e.conftest import TIMINGS
from tests.e2e.helpers import clean_guests, explained, fleet, running_on

pytestmark = pytest.mark.e2e
SLOW, TINY = ["rd-1", "rd-2"], ["rd-t"]
BOOT_S = 8.0
DOWN_S = 2.0


def _migrating(store: Store, job_id: str) -> Move | None:
    """A move of the job that libvirt is copying (10 % or more done)."""
    for move in store.job_moves(store.get_job(job_id)):
        if move.state == "migrating" and move.progress.get("percent", 0) >= 10:
            return move
    return None


def _drain_mid_flight(cfg: LabConfig, store: Store) -> str:
    for name in SLOW:
        create_lab_vm(cfg, name, "h1", os_guest=True, dirty_mib_s=4)
        done = fleet("vm", "policy", name, "--bandwidth-mib-s", "32")
        assert done.returncode == 0, done.stderr
    for name in TINY:
        create_lab_vm(cfg, name, "h1")
    time.sleep(BOOT_S)
    done = fleet("host", "drain", "h1", "--concurrency", "2")
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    wait_until(lambda: _migrating(store, job_id) is not None, 120.0,
               "a drain move to be migrating", interval_s=0.05)
    return job_id


def test_redis_killed_mid_drain_loses_nothing(fleet_lab: LabConfig) -> None:
    clean_guests(fleet_lab)
    store = lab_store(fleet_lab)
    job_id = _drain_mid_flight(fleet_lab, store)
    names = SLOW + TINY
    with CopyWatch(fleet_lab, names, interval_s=0.1) as watch:
        killed = time.monotonic()
        kill_service(fleet_lab, "redis")
        time.sleep(DOWN_S)
        restart_redis(fleet_lab)
        with explained(store, job_id, f"dead: {dead_processes(fleet_lab)}"):
            wait_until(lambda: store.get_job(job_id).terminal, 240.0, f"job {job_id} to end")
        TIMINGS["Redis SIGKILLed mid-drain: kill -> drain ended"] = time.monotonic() - killed
    with explained(store, job_id, f"watch {[watch.two_copies_s(n) for n in names]}"):
        assert dead_processes(fleet_lab) == []  # agents, controller and monitor survived
        assert store.get_job(job_id).state == "succeeded"
        for name in names:
            hosts = running_on(fleet_lab, name)
            assert len(hosts) == 1 and hosts != ["h1"], (name, hosts)
            vm = store.get_vm(name)
            assert (vm.host, vm.state) == (hosts[0], "running"), name
            assert watch.two_copies_s(name) == 0.0
        assert store.get_host("h1").state == "maintenance"
    back = fleet("host", "activate", "h1")
    assert back.returncode == 0, back.stderr
