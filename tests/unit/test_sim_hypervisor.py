"""The sim hypervisor against a fake Redis: a non-atomic switch-over, fault knobs, pause.

The pictures checked here are the ones measured on libvirt 9.0 / QEMU 7.2: the source copy
stays ``paused`` for a moment after the destination resumed, and an error from the
migration call says nothing reliable about where the VM is.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from fleet.core.errors import InvalidInput
from fleet.core.hypervisor import (
    DestinationError,
    DomainGone,
    DomainSpec,
    DomainState,
    MigrationParams,
    MigrationTarget,
    PermanentError,
    TransientError,
)
from fleet.settings import Settings
from fleet.store import Store
from workers.hypervisors import libvirt as lv
from workers.hypervisors import sim as sim_module
from workers.hypervisors.factory import open_hypervisor
from workers.hypervisors.sim import SimHypervisor

GAP_S = 0.3
SPEC = DomainSpec("vm1", "u-1", 2, 2048, dirty_mib_s=20.0)
TO_H2 = MigrationTarget("h2")
Picture = tuple[DomainState | None, DomainState | None]


def sim(store: Store, host: str = "h1", gap_s: float = GAP_S, speed: float = 50.0,
        bandwidth_mib_s: float = 1000.0) -> SimHypervisor:
    return SimHypervisor(store.r, store.keys, host, speed=speed,
                         bandwidth_mib_s=bandwidth_mib_s, switch_gap_s=gap_s)


def state(hv: SimHypervisor, name: str = "vm1") -> DomainState | None:
    try:
        return hv.lookup(name).state
    except DomainGone:
        return None


def picture(store: Store) -> Picture:
    """(state on h1, state on h2); None where the host does not hold vm1."""
    return state(sim(store, "h1")), state(sim(store, "h2"))


@pytest.fixture
def h1(store: Store) -> SimHypervisor:
    hv = sim(store)
    hv.start(SPEC)
    return hv


# -- the switch-over ---------------------------------------------------------------
def test_a_clean_migration_ends_on_the_destination_after_the_gap(
        store: Store, h1: SimHypervisor) -> None:
    began = time.monotonic()
    h1.migrate("vm1", TO_H2, MigrationParams())
    assert time.monotonic() - began >= GAP_S
    assert picture(store) == (None, DomainState.RUNNING)
    assert not sim(store, "h2").lookup("vm1").migrating
    assert h1.job_stats("vm1") is None


def test_the_gap_is_seen_from_another_thread(store: Store, h1: SimHypervisor) -> None:
    seen: list[tuple[DomainState | None, DomainState | None, bool]] = []
    done = threading.Event()

    def poll() -> None:
        watcher_h1, watcher_h2 = sim(store, "h1"), sim(store, "h2")
        while not done.is_set():  # read in the order the switch-over moves: no mixed picture
            stats = watcher_h1.job_stats("vm1")
            there = state(watcher_h2)
            seen.append((state(watcher_h1), there, stats is not None))
            time.sleep(0.005)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    h1.migrate("vm1", TO_H2, MigrationParams())
    done.set()
    poller.join(5)
    gap = [s for s in seen if s[:2] == (DomainState.PAUSED, DomainState.RUNNING)]
    assert len(gap) >= 5, seen
    assert all(has_stats for _, _, has_stats in gap)  # the job still reports in the gap
    assert (DomainState.RUNNING, DomainState.PAUSED) in [s[:2] for s in seen]  # incoming
    assert not [s for s in seen if s[:2] == (None, None)]
    assert not [s for s in seen if s[:2] == (DomainState.RUNNING, DomainState.RUNNING)]
    assert picture(store) == (None, DomainState.RUNNING)
    assert h1.job_stats("vm1") is None


def test_the_paused_source_copy_is_marked_migrating_in_the_gap(
        store: Store, h1: SimHypervisor) -> None:
    h1.inject("error_in_gap")
    with pytest.raises(TransientError):
        h1.migrate("vm1", TO_H2, MigrationParams())
    assert h1.lookup("vm1").migrating
    assert not sim(store, "h2").lookup("vm1").migrating


def test_a_zero_gap_is_allowed_and_a_negative_one_is_not(store: Store) -> None:
    hv = sim(store, gap_s=0)
    hv.start(SPEC)
    hv.migrate("vm1", TO_H2, MigrationParams())
    assert picture(store) == (None, DomainState.RUNNING)
    with pytest.raises(ValueError, match="switch_gap_s"):
        sim(store, gap_s=-0.1)


def test_the_factory_takes_the_gap_from_settings(store: Store) -> None:
    hv = open_hypervisor("sim", "h1", "", store, Settings(sim_switch_gap_s=0.05))
    assert isinstance(hv, SimHypervisor)
    assert hv.switch_gap_s == 0.05
    assert Settings().sim_switch_gap_s == sim_module.SWITCH_GAP_S


# -- fault knobs ---------------------------------------------------------------
def test_fail_before_switchover_leaves_the_vm_running_on_the_source(
        store: Store, h1: SimHypervisor) -> None:
    sim(store).inject("fail_before_switchover")  # another instance: the knob is in Redis
    with pytest.raises(DestinationError, match="client socket is closed"):
        h1.migrate("vm1", TO_H2, MigrationParams())
    assert picture(store) == (DomainState.RUNNING, None)
    assert h1.job_stats("vm1") is None
    assert h1.armed_faults() == {}


def test_error_in_gap_raises_while_paused_and_the_source_goes_after_the_gap(
        store: Store, h1: SimHypervisor) -> None:
    h1.inject("error_in_gap")
    with pytest.raises(TransientError, match="client socket is closed") as raised:
        h1.migrate("vm1", TO_H2, MigrationParams())
    assert not isinstance(raised.value, DestinationError)
    assert picture(store) == (DomainState.PAUSED, DomainState.RUNNING)
    assert h1.job_stats("vm1") is not None
    time.sleep(GAP_S + 0.2)
    assert picture(store) == (None, DomainState.RUNNING)
    assert h1.job_stats("vm1") is None


def test_both_running_leaves_two_running_copies_for_good(
        store: Store, h1: SimHypervisor) -> None:
    h1.inject("both_running")
    with pytest.raises(TransientError, match="client socket is closed") as raised:
        h1.migrate("vm1", TO_H2, MigrationParams())
    assert not isinstance(raised.value, DestinationError)
    assert picture(store) == (DomainState.RUNNING, DomainState.RUNNING)
    source, dest = h1.lookup("vm1"), sim(store, "h2").lookup("vm1")
    assert source.cancelled and not source.migrating  # "running (migration cancelled)"
    assert not dest.cancelled and not dest.migrating
    assert h1.job_stats("vm1") is None
    time.sleep(GAP_S + 0.2)
    assert picture(store) == (DomainState.RUNNING, DomainState.RUNNING)


def test_pausing_the_cancelled_copy_forgets_why_it_ran(store: Store, h1: SimHypervisor) -> None:
    h1.inject("both_running")
    with pytest.raises(TransientError):
        h1.migrate("vm1", TO_H2, MigrationParams())
    h1.pause("vm1")
    assert h1.lookup("vm1").state is DomainState.PAUSED and not h1.lookup("vm1").cancelled
    h1.resume("vm1")
    assert h1.lookup("vm1").state is DomainState.RUNNING and not h1.lookup("vm1").cancelled


def test_error_after_switchover_raises_although_the_vm_moved(
        store: Store, h1: SimHypervisor) -> None:
    h1.inject("error_after_switchover")
    began = time.monotonic()
    with pytest.raises(TransientError, match="client socket is closed") as raised:
        h1.migrate("vm1", TO_H2, MigrationParams())
    assert time.monotonic() - began >= GAP_S
    assert not isinstance(raised.value, DestinationError)
    assert picture(store) == (None, DomainState.RUNNING)
    assert h1.job_stats("vm1") is None


def test_a_fault_hits_count_migrations_then_stops(store: Store, h1: SimHypervisor) -> None:
    h1.inject("fail_before_switchover", count=2)
    assert h1.armed_faults() == {"fail_before_switchover": 2}
    for left in (1, 0):
        with pytest.raises(DestinationError):
            h1.migrate("vm1", TO_H2, MigrationParams())
        assert h1.armed_faults() == ({"fail_before_switchover": left} if left else {})
    h1.migrate("vm1", TO_H2, MigrationParams())
    assert picture(store) == (None, DomainState.RUNNING)


def test_faults_belong_to_the_source_host(store: Store, h1: SimHypervisor) -> None:
    sim(store, "h2").inject("both_running")
    h1.migrate("vm1", TO_H2, MigrationParams())
    assert picture(store) == (None, DomainState.RUNNING)
    assert sim(store, "h2").armed_faults() == {"both_running": 1}


def test_several_armed_faults_are_taken_one_per_migration(
        store: Store, h1: SimHypervisor) -> None:
    h1.inject("error_after_switchover")
    h1.inject("fail_before_switchover")
    with pytest.raises(DestinationError):  # the earlier phase's fault first
        h1.migrate("vm1", TO_H2, MigrationParams())
    with pytest.raises(TransientError):
        h1.migrate("vm1", TO_H2, MigrationParams())
    assert picture(store) == (None, DomainState.RUNNING)
    assert h1.armed_faults() == {}


def test_clear_faults_and_bad_knobs(store: Store, h1: SimHypervisor) -> None:
    h1.inject("both_running", count=3)
    h1.clear_faults()
    assert h1.armed_faults() == {}
    with pytest.raises(InvalidInput, match="unknown sim fault"):
        h1.inject("meteor")
    with pytest.raises(InvalidInput, match="at least 1"):
        h1.inject("both_running", count=0)
    h1.migrate("vm1", TO_H2, MigrationParams())
    assert picture(store) == (None, DomainState.RUNNING)


def test_an_aborted_migration_does_not_use_up_a_fault(store: Store) -> None:
    slow = sim(store, speed=1.0, bandwidth_mib_s=100.0)
    slow.start(SPEC)
    slow.inject("both_running")
    errors: list[BaseException] = []

    def call() -> None:
        try:
            slow.migrate("vm1", TO_H2, MigrationParams())
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    deadline = time.monotonic() + 5
    while slow.job_stats("vm1") is None and time.monotonic() < deadline:
        time.sleep(0.02)
    slow.abort_job("vm1")
    worker.join(5)
    assert len(errors) == 1 and isinstance(errors[0], PermanentError)
    assert picture(store) == (DomainState.RUNNING, None)
    assert slow.armed_faults() == {"both_running": 1}


# -- behaviour kept from before --------------------------------------------------
def test_migrating_what_is_absent_or_already_there_fails_early(
        store: Store, h1: SimHypervisor) -> None:
    with pytest.raises(DomainGone):
        h1.migrate("vm9", TO_H2, MigrationParams())
    sim(store, "h2").start(SPEC)
    with pytest.raises(DestinationError, match="already exists"):
        h1.migrate("vm1", TO_H2, MigrationParams())
    assert picture(store) == (DomainState.RUNNING, DomainState.RUNNING)


def test_job_stats_report_progress_while_the_migration_runs(store: Store) -> None:
    slow = sim(store, gap_s=0, speed=1.0, bandwidth_mib_s=2048.0)
    slow.start(SPEC)
    worker = threading.Thread(target=slow.migrate, args=("vm1", TO_H2, MigrationParams()),
                              daemon=True)
    worker.start()
    deadline = time.monotonic() + 5
    stats = None
    while stats is None and time.monotonic() < deadline:
        stats = slow.job_stats("vm1")
        time.sleep(0.01)
    worker.join(5)
    assert stats is not None and stats.total_mib == 2048 and stats.processed_mib > 0
    assert picture(store) == (None, DomainState.RUNNING)


# -- pause and resume ----------------------------------------------------------
def test_pause_and_resume(store: Store, h1: SimHypervisor) -> None:
    h1.pause("vm1")
    assert h1.lookup("vm1").state is DomainState.PAUSED
    h1.pause("vm1")  # already paused: nothing to do, as libvirt
    assert h1.lookup("vm1").state is DomainState.PAUSED
    h1.resume("vm1")
    assert h1.lookup("vm1").state is DomainState.RUNNING
    h1.resume("vm1")
    assert h1.lookup("vm1").state is DomainState.RUNNING
    h1.pause("vm1")
    h1.destroy("vm1")  # a paused domain may be destroyed
    assert state(h1) is None


def test_pause_and_resume_of_absent_or_stopped_domains(store: Store, h1: SimHypervisor) -> None:
    for call in (h1.pause, h1.resume):
        with pytest.raises(DomainGone):
            call("vm9")
    h1.shutdown("vm1", 0)
    for call in (h1.pause, h1.resume):
        with pytest.raises(PermanentError, match="shutoff"):
            call("vm1")
    assert h1.lookup("vm1").state is DomainState.SHUTOFF


def test_libvirt_reports_a_copy_resumed_by_a_cancelled_migration() -> None:
    assert lv.migration_cancelled(1, 6)  # running, migration canceled
    assert not lv.migration_cancelled(1, 2)  # running, migrated
    assert not lv.migration_cancelled(3, 6)  # paused


@pytest.mark.skipif(importlib.util.find_spec("libvirt") is None, reason="no libvirt-python")
def test_libvirt_reason_codes_match_libvirt_python() -> None:
    import libvirt

    assert lv.VIR_DOMAIN_RUNNING == libvirt.VIR_DOMAIN_RUNNING
    assert lv.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED == libvirt.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED


class _FakeLibvirtError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    def get_error_code(self) -> int:
        return self.code

    def get_error_message(self) -> str:
        return self.message


class _FakeDomain:
    def __init__(self, fail: _FakeLibvirtError | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def suspend(self) -> int:
        return self._do("suspend")

    def resume(self) -> int:
        return self._do("resume")

    def _do(self, what: str) -> int:
        if self.fail is not None:
            raise self.fail
        self.calls.append(what)
        return 0


def _libvirt_with(monkeypatch: pytest.MonkeyPatch, dom: _FakeDomain) -> lv.LibvirtHypervisor:
    monkeypatch.setattr(lv, "_libvirt", lambda: SimpleNamespace(libvirtError=_FakeLibvirtError))
    adapter = lv.LibvirtHypervisor("h1")
    conn: Any = SimpleNamespace(lookupByName=lambda name: dom)
    monkeypatch.setattr(adapter, "_connection", lambda: conn)
    return adapter


def test_libvirt_pause_and_resume_suspend_and_resume_the_domain(
        monkeypatch: pytest.MonkeyPatch) -> None:
    dom = _FakeDomain()
    adapter = _libvirt_with(monkeypatch, dom)
    adapter.pause("vm1")
    adapter.resume("vm1")
    assert dom.calls == ["suspend", "resume"]


@pytest.mark.parametrize(("code", "expected"), [
    (lv.ERR_NO_DOMAIN, DomainGone),
    (lv.ERR_OPERATION_INVALID, PermanentError),
    (lv.ERR_OPERATION_TIMEOUT, TransientError),
])
def test_libvirt_pause_and_resume_translate_errors(
        monkeypatch: pytest.MonkeyPatch, code: int, expected: type[Exception]) -> None:
    adapter = _libvirt_with(monkeypatch, _FakeDomain(_FakeLibvirtError(code, "no")))
    for call in (adapter.pause, adapter.resume):
        with pytest.raises(expected):
            call("vm1")
