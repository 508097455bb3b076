"""The libvirt adapter's translation at its boundary: errors, states, job stats, XML.

Fast and without libvirtd: errors are fakes with libvirtError's three getters; the typed
parameters use a fake module. One test checks the numeric codes against libvirt-python
when it is installed.
"""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest

from fleet.core.hypervisor import (
    DestinationError,
    DomainGone,
    DomainState,
    MigrationParams,
    PermanentError,
    TransientError,
)
from workers.hypervisors import domain_xml
from workers.hypervisors import libvirt as lv
from workers.hypervisors import libvirt_migration as lm


class FakeLibvirtError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    def get_error_code(self) -> int:
        return self.code

    def get_error_message(self) -> str:
        return self.message

    def get_error_domain(self) -> int:
        return 10


@pytest.mark.parametrize(("code", "message", "expected"), [
    (lv.ERR_NO_DOMAIN, "Domain not found", DomainGone),
    (lv.ERR_OPERATION_TIMEOUT, "cannot acquire state change lock", TransientError),
    (lv.ERR_SYSTEM_ERROR, "Cannot recv data: Connection reset by peer", TransientError),
    (lv.ERR_RPC, "failed to connect", TransientError),
    (lv.ERR_INTERNAL_ERROR, "client socket is closed", TransientError),
    (lv.ERR_CPU_INCOMPATIBLE, "the CPU is incompatible with host CPU", PermanentError),
    (lv.ERR_OPERATION_UNSUPPORTED, "post-copy is not supported", PermanentError),
    (lv.ERR_NO_SUPPORT, "this function is not supported", PermanentError),
    (lv.ERR_OPERATION_ABORTED, "migration out job: canceled by client", PermanentError),
    (lv.ERR_XML_ERROR, "bad XML", PermanentError),
    (lv.ERR_INTERNAL_ERROR, "unexpected QEMU reply", PermanentError),
    (lv.ERR_OPERATION_INVALID, "domain is not running", PermanentError),
])
def test_classify_outside_migration(code: int, message: str, expected: type) -> None:
    assert lv.classify(code, message) is expected


@pytest.mark.parametrize(("code", "message", "local_alive", "expected"), [
    (lv.ERR_SYSTEM_ERROR, "unable to connect to server at '10.77.0.12:16509'", True,
     DestinationError),
    (lv.ERR_INTERNAL_ERROR, "client socket is closed", True, DestinationError),
    (lv.ERR_DOM_EXIST, "domain 'vm1' already exists", True, DestinationError),
    # our own connection to the source died: not the destination's fault
    (lv.ERR_SYSTEM_ERROR, "Cannot write data: Broken pipe", False, TransientError),
    (lv.ERR_OPERATION_ABORTED, "migration out job: canceled by client", True, PermanentError),
    (lv.ERR_CPU_INCOMPATIBLE, "guest CPU doesn't match", True, PermanentError),
    (lv.ERR_NO_DOMAIN, "Domain not found", True, DomainGone),
])
def test_classify_migration(code: int, message: str, local_alive: bool, expected: type) -> None:
    assert lv.classify(code, message, migrating=True, local_alive=local_alive) is expected


def test_translate_keeps_message_and_code() -> None:
    exc = lv.translate(FakeLibvirtError(91, "CPU incompatible"), "migrate vm1 h1 -> h2")
    assert isinstance(exc, PermanentError)
    assert str(exc) == "migrate vm1 h1 -> h2: CPU incompatible (libvirt error 91)"
    gone = lv.translate(FakeLibvirtError(42, "no domain"), "lookup", migrating=True)
    assert isinstance(gone, DomainGone)


def test_destination_error_is_transient() -> None:
    assert issubclass(DestinationError, TransientError)


@pytest.mark.parametrize(("code", "state"), [
    (0, DomainState.OTHER), (1, DomainState.RUNNING), (2, DomainState.RUNNING),
    (3, DomainState.PAUSED), (4, DomainState.OTHER), (5, DomainState.SHUTOFF),
    (6, DomainState.CRASHED), (7, DomainState.PAUSED), (99, DomainState.OTHER),
])
def test_domain_state(code: int, state: DomainState) -> None:
    assert lv.domain_state(code) is state


def test_job_stats_from_libvirt_units() -> None:
    mib = 1024 * 1024
    stats = lm.job_stats_from({
        "type": 2, "data_processed": 64 * mib, "data_remaining": 192 * mib,
        "data_total": 256 * mib, "memory_bps": 40 * mib, "memory_dirty_rate": 2048,
        "memory_page_size": 4096, "memory_iteration": 3, "time_elapsed": 1500,
        "downtime": 120,
    })
    assert (stats.processed_mib, stats.remaining_mib, stats.total_mib) == (64, 192, 256)
    assert stats.mib_s == 40 and stats.dirty_mib_s == 8.0
    assert stats.iteration == 3 and stats.elapsed_s == 1.5
    assert stats.expected_downtime_ms == 120


FAKE_LIB = SimpleNamespace(
    VIR_MIGRATE_LIVE=1, VIR_MIGRATE_PEER2PEER=2, VIR_MIGRATE_PERSIST_DEST=8,
    VIR_MIGRATE_UNDEFINE_SOURCE=16, VIR_MIGRATE_AUTO_CONVERGE=8192,
    VIR_MIGRATE_POSTCOPY=32768, VIR_MIGRATE_PARAM_BANDWIDTH="bandwidth",
    VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL="auto_converge.initial",
    VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT="auto_converge.increment",
)


def test_migration_flags() -> None:
    base = 1 | 2 | 8 | 16
    assert lm.migration_flags(FAKE_LIB, MigrationParams()) == base
    both = MigrationParams(auto_converge=True, postcopy=True)
    assert lm.migration_flags(FAKE_LIB, both) == base | 8192 | 32768


def test_migration_params() -> None:
    assert lm.migration_params(FAKE_LIB, MigrationParams()) == {}
    params = MigrationParams(bandwidth_mib_s=40.4, extra={"auto_converge_initial": "40",
                                                          "unknown": "x"})
    assert lm.migration_params(FAKE_LIB, params) == {"bandwidth": 40,
                                                     "auto_converge.initial": 40}
    with pytest.raises(PermanentError):
        lm.migration_params(FAKE_LIB, MigrationParams(extra={"auto_converge_initial": "x"}))


def test_tiny_domain_xml() -> None:
    root = ET.fromstring(domain_xml.tiny_domain_xml("vm<1>", "u-1", memory_mib=64, kvm=True))
    assert root.get("type") == "kvm"
    assert root.findtext("name") == "vm<1>"
    assert root.findtext("memory") == "64"
    assert root.find("os/kernel") is None
    tcg = ET.fromstring(domain_xml.tiny_domain_xml("vm1", "u-1", kvm=False))
    assert tcg.get("type") == "qemu"


def test_os_domain_xml() -> None:
    root = ET.fromstring(domain_xml.os_domain_xml("os1", "u-2", "/boot/vmlinuz", "/lab/initrd.gz",
                                          memory_mib=256, fill_mib=100, dirty_mib_s=8))
    assert root.get("type") == "qemu"  # TCG: a Linux under nested KVM hangs here
    assert root.findtext("os/kernel") == "/boot/vmlinuz"
    assert root.findtext("os/initrd") == "/lab/initrd.gz"
    cmdline = root.findtext("os/cmdline") or ""
    assert "fleet.fill=100" in cmdline and "fleet.dirty=8" in cmdline


@pytest.mark.skipif(importlib.util.find_spec("libvirt") is None,
                    reason="libvirt-python not installed")
def test_codes_match_libvirt_python() -> None:
    import libvirt

    for name in dir(lv):
        if name.startswith("ERR_"):
            assert getattr(libvirt, f"VIR_{name}") == getattr(lv, name), name
