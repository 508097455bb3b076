"""The destination's libvirtd dies at the end of a live migration, on real QEMU.

libvirt 9.0 with QEMU 7.2, peer to peer: SIGKILLed right after the destination resumed
the guest, the source's libvirt resumes its copy too ("running (migration cancelled)"),
the runner's migration call fails, and two copies run. fleet pauses the source's copy
while the destination cannot be asked and removes it once the destination answers again
(``lab up`` restarts its libvirtd, which finds the guest running), so the VM ends on the
destination alone. Killed a moment later, once the source let go of its copy, the move
must succeed without anything being paused or removed, whether the migration call
returned or failed (the runner then looks at both hosts before it decides).

Hitting a moment is timing: ``fleet.lab.faults.strike`` polls both hosts and kills at
once, and a ``CopyWatch`` samples both hosts (the destination's QEMU while its libvirtd
is down) to measure how long two copies ran. If libvirt finished before the kill, the
checks are those of a move that simply succeeded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from fleet.lab.config import LabConfig
from fleet.lab.faults import CopyWatch, Moment, Strike, kill_libvirtd, restore, strike
from fleet.lab.guests import create_lab_vm
from fleet.lab.procs import wait_until
from fleet.lab.services import lab_store
from fleet.store import Store
from tests.e2e.conftest import TIMINGS
from tests.e2e.helpers import clean_guests, explained, fleet, qemu_pids, running_on

pytestmark = pytest.mark.e2e
RESUMED, GONE, SOURCE = "flt-resumed", "flt-gone", "flt-source"
BOOT_S = 8.0  # an OS guest boots under TCG and fills its memory
TWO_COPIES_MAX_S = 3.0  # invariant 1: libvirt's own two copies, ended within seconds


@pytest.fixture(scope="module")
def guests(fleet_lab: LabConfig) -> list[str]:
    """Small Linux guests on h1 that dirty memory, migrated at 32 MiB/s (~5 s)."""
    clean_guests(fleet_lab)
    for name in (RESUMED, GONE, SOURCE):
        create_lab_vm(fleet_lab, name, "h1", os_guest=True, dirty_mib_s=4)
        done = fleet("vm", "policy", name, "--bandwidth-mib-s", "32")
        assert done.returncode == 0, done.stderr
    time.sleep(BOOT_S)
    return [RESUMED, GONE, SOURCE]


@dataclass(frozen=True)
class Run:
    """One migration whose destination libvirtd was killed: when, and what was seen."""

    job_id: str
    hit: Strike
    watch: CopyWatch
    ended_s: float  # from the kill to the job's end
    steps: list[tuple[str, str]]  # safety steps taken on the guest's copies, by host
    sighted: list[dict[str, Any]]  # the runner's looks at both hosts after an error

    @property
    def how(self) -> str:
        return "the migration call failed" if self.sighted else "the migration call returned"


def _kill_libvirtd_at(cfg: LabConfig, name: str, moment: Moment, host: str = "h2") -> Run:
    """Migrate ``name`` h1→h2, SIGKILL ``host``'s libvirtd at ``moment``, bring it back
    (lab up), and wait for the job to end and one QEMU to be left."""
    store = lab_store(cfg)
    with CopyWatch(cfg, [name], interval_s=0.02) as watch:
        done = fleet("vm", "migrate", name, "--to", "h2")
        assert done.returncode == 0, done.stderr
        job_id = done.stdout.strip()
        hit = strike(cfg, name, "h1", "h2", moment, lambda: kill_libvirtd(cfg, host), watch)
        restore(cfg)
        with explained(store, job_id, hit):
            wait_until(lambda: store.get_job(job_id).terminal, 120.0, f"job {job_id} to end")
            ended = time.monotonic() - hit.at
            wait_until(lambda: len(_qemus(cfg, name)) == 1, 30.0, "a single QEMU")
    sighted = [e for _, e in store.events(job_id)
               if e["kind"] == "move.sighted" and e.get("by") == "runner"]
    return Run(job_id, hit, watch, ended, _steps(store, job_id, name), sighted)


def _qemus(cfg: LabConfig, name: str) -> list[tuple[str, int]]:
    """Every QEMU of ``name`` on every lab host, as (host, pid)."""
    return [(h, pid) for h in cfg.host_names() for pid in qemu_pids(cfg, h, name)]


def _steps(store: Store, job_id: str, name: str) -> list[tuple[str, str]]:
    """The safety steps taken on ``name``'s copies, by this job and by any agent."""
    events = [e for _, e in store.events(job_id)] + [e for _, e in store.journal.audit()
                                                     if not e.get("job")]
    return [(e["kind"], e.get("host", "")) for e in events
            if e["kind"].startswith("vm.copy_") and e.get("vm") == name]


def _alone_on_h2(cfg: LabConfig, store: Store, name: str) -> None:
    assert [h for h, _ in _qemus(cfg, name)] == ["h2"]
    assert running_on(cfg, name) == ["h2"]
    vm = store.get_vm(name)
    assert (vm.host, vm.state) == ("h2", "running")


def test_libvirtd_killed_right_after_the_destination_resumed(fleet_lab: LabConfig,
                                                              guests: list[str]) -> None:
    store = lab_store(fleet_lab)
    run = _kill_libvirtd_at(fleet_lab, RESUMED, Moment.RESUMED)
    job_id, hit, steps = run.job_id, run.hit, run.steps
    two = run.watch.two_copies_s(RESUMED)
    resumed = ("vm.copy_pause", "h1") in steps or run.watch.ran_on(RESUMED, "h1", hit.at)
    how = "libvirt resumed the source" if resumed else "libvirt finished first"
    TIMINGS[f"h2 libvirtd killed at resume ({how}): two running copies"] = two
    TIMINGS[f"h2 libvirtd killed at resume ({how}): kill -> job end"] = run.ended_s
    with explained(store, job_id, hit, f"steps {steps}", f"two copies {two:.2f}s"):
        assert hit.destination == "running"
        assert store.get_job(job_id).state == "succeeded"
        _alone_on_h2(fleet_lab, store, RESUMED)
        assert two <= TWO_COPIES_MAX_S
        if resumed:  # fleet paused the source's copy, then removed it
            assert ("vm.copy_pause", "h1") in steps and ("vm.copy_remove", "h1") in steps
            assert not [s for s in steps if s[1] == "h2"]
        else:  # libvirt finished before the kill: nothing to pause, nothing paused
            assert hit.source in ("paused", "shutoff", "absent")
            assert steps == [] and two == 0.0


def test_libvirtd_killed_just_after_the_source_let_go(fleet_lab: LabConfig,
                                                      guests: list[str]) -> None:
    store = lab_store(fleet_lab)
    run = _kill_libvirtd_at(fleet_lab, GONE, Moment.SOURCE_GONE)
    job_id, hit, steps = run.job_id, run.hit, run.steps
    TIMINGS[f"h2 libvirtd killed after the source let go ({run.how}): kill -> job end"] = (
        run.ended_s)
    with explained(store, job_id, hit, f"steps {steps}"):
        assert hit.source in ("shutoff", "absent")
        assert store.get_job(job_id).state == "succeeded"
        (move,) = store.job_moves(store.get_job(job_id))
        assert move.state == "succeeded" and move.destination == "h2"
        _alone_on_h2(fleet_lab, store, GONE)
        assert run.watch.two_copies_s(GONE) == 0.0
        assert not [s for s in steps if s[1] == "h2"]  # the only copy was never touched
        assert all(e["verdict"] == "moved" for e in run.sighted)


def test_source_libvirtd_killed_after_the_switch_over(fleet_lab: LabConfig,
                                                      guests: list[str]) -> None:
    """The runner's migration call breaks (its libvirt connection dies) after the guest
    already resumed on h2: the error decides nothing; the runner waits for h1's libvirt
    to answer again, sees the guest on h2 and commits the move."""
    store = lab_store(fleet_lab)
    run = _kill_libvirtd_at(fleet_lab, SOURCE, Moment.RESUMED, host="h1")
    job_id, hit, steps = run.job_id, run.hit, run.steps
    TIMINGS[f"h1 libvirtd killed after the switch-over ({run.how}): kill -> job end"] = (
        run.ended_s)
    with explained(store, job_id, hit, f"steps {steps}", f"sighted {run.sighted}"):
        assert hit.destination == "running"
        assert store.get_job(job_id).state == "succeeded"
        _alone_on_h2(fleet_lab, store, SOURCE)
        assert run.watch.two_copies_s(SOURCE) <= TWO_COPIES_MAX_S
        assert not [s for s in steps if s[1] == "h2"]  # the destination's copy is kept
        assert all(e["verdict"] == "moved" for e in run.sighted)
