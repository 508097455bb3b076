"""What the agent reads of its own host: bridges, shared mounts, the guest CPU to compare."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.hypervisors.libvirt_node import guest_cpu_xml, host_bridges
from workers.watcher import shared_mounts


def test_bridges_are_the_interfaces_with_a_bridge_directory(tmp_path: Path) -> None:
    for name, bridge in (("br0", True), ("eth0", False), ("flan0", True)):
        (tmp_path / name).mkdir()
        if bridge:
            (tmp_path / name / "bridge").mkdir()
    assert host_bridges(tmp_path) == ["br0", "flan0"]
    assert host_bridges(tmp_path / "missing") == []


def test_network_filesystems_are_shared_storage(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\n"
                      "nas:/vol /var/lib/libvirt/images nfs4 rw 0 0\n"
                      "ceph /mnt/ceph/ ceph rw 0 0\n")
    assert shared_mounts(mounts) == ("/var/lib/libvirt/images/", "/mnt/ceph/")
    assert shared_mounts(tmp_path / "none") == ()


@pytest.mark.parametrize(("cpu", "compared"), [
    ("<cpu mode='custom' match='exact' check='partial'><model>Skylake-Client</model></cpu>",
     True),
    ("<cpu mode='custom' match='exact' check='none'><model>qemu64</model></cpu>", False),
    ("<cpu mode='host-passthrough'/>", False),
    ("", False),
])
def test_only_a_checked_guest_cpu_model_is_compared(cpu: str, compared: bool) -> None:
    xml = f"<domain><name>x</name>{cpu}</domain>"
    assert bool(guest_cpu_xml(xml)) is compared
