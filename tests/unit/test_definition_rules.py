"""Domain definitions from the store are checked before any define."""

from __future__ import annotations

import pytest

from fleet.core.definition_rules import DEFAULT_ROOTS, definition_problems, inside
from workers.hypervisors.domain_xml import os_domain_xml, tiny_domain_xml

BASE = ("<domain type='kvm'{ns}><name>vm1</name><memory unit='MiB'>64</memory>"
        "<os><type>hvm</type>{os}</os><devices>{devices}</devices>{extra}</domain>")
QEMU = " xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'"


def domain(devices: str = "", os: str = "", extra: str = "", ns: str = "") -> str:
    return BASE.format(devices=devices, os=os, extra=extra, ns=ns)


def test_what_fleet_itself_defines_passes() -> None:
    assert definition_problems(tiny_domain_xml("a", "u", kvm=True, network="lan")) == []
    lab = os_domain_xml("b", "u", "/boot/vmlinuz-6.1", "/var/lib/fleet-lab/guest/initrd.gz")
    assert definition_problems(lab, (*DEFAULT_ROOTS, "/boot", "/var/lib/fleet-lab")) == []
    usual = domain(
        "<emulator>/usr/bin/qemu-system-x86_64</emulator>"
        "<disk type='file'><source file='/var/lib/libvirt/images/vm1.qcow2'/>"
        "<backingStore type='file'><source file='/var/lib/libvirt/images/base.qcow2'/>"
        "</backingStore></disk><disk type='network'><source protocol='rbd' name='p/v'/>"
        "</disk><disk type='file' device='cdrom'><source/></disk>"
        "<interface type='direct'><source dev='eth0' mode='bridge'/></interface>"
        "<serial type='pty'><source path='/dev/pts/4'/></serial>",
        os="<loader>/usr/share/OVMF/OVMF_CODE.fd</loader>")
    assert definition_problems(usual) == []


@pytest.mark.parametrize(("xml", "said"), [
    (domain(extra="<qemu:commandline><qemu:arg value='-x'/></qemu:commandline>", ns=QEMU),
     "<qemu:commandline> passes options to QEMU"),
    (domain("<emulator>/tmp/x.sh</emulator>"), "emulator '/tmp/x.sh' is not a QEMU binary"),
    (domain("<emulator>/opt/evil/qemu-system-x86_64</emulator>"),
     "emulator '/opt/evil/qemu-system-x86_64' is outside the allowed roots"),
    (domain("<disk type='file'><source file='/etc/shadow'/></disk>"),
     "<disk> source '/etc/shadow' is outside"),
    (domain("<disk type='block'><source dev='/dev/sda'/></disk>"),
     "<disk> source '/dev/sda' is outside"),
    (domain("<disk type='file'><source file='/var/lib/libvirt/../../etc/shadow'/></disk>"),
     "'/var/lib/libvirt/../../etc/shadow' is outside"),
    (domain("<disk type='file'><source file='/var/lib/libvirt/a.qcow2'/><backingStore"
            " type='file'><source file='/root/base.qcow2'/></backingStore></disk>"),
     "<backingStore> source '/root/base.qcow2' is outside"),
    (domain("<filesystem type='mount'><source dir='/'/><target dir='host'/></filesystem>"),
     "<filesystem> source '/' is outside"),
    (domain("<serial type='file'><source path='/etc/cron.d/x'/></serial>"),
     "<serial> source '/etc/cron.d/x' is outside"),
    (domain("<interface type='ethernet'><script path='/tmp/up.sh'/></interface>"),
     "<script path='/tmp/up.sh'> runs a host program"),
    (domain(os="<kernel>/root/vmlinuz</kernel>"), "kernel '/root/vmlinuz' is outside"),
    (domain().replace("type='kvm'", "type='xen'"), "domain type 'xen' is not kvm or qemu"),
    ("<domain", "not XML"),
    ("<network/>", "not a domain definition"),
])
def test_a_definition_that_would_run_or_read_host_things_is_refused(xml: str,
                                                                     said: str) -> None:
    problems = definition_problems(xml)
    assert any(said in p for p in problems), problems


def test_roots_are_whole_directories() -> None:
    assert inside("/var/lib/libvirt/images/a", ["/var/lib/libvirt"])
    assert inside("/var/lib/libvirt", ["/var/lib/libvirt/"])
    assert not inside("/var/lib/libvirt-evil/a", ["/var/lib/libvirt"])
    assert not inside("images/a", ["/var/lib/libvirt"])
    assert not inside("/var/lib/libvirt/a", ["relative"])
