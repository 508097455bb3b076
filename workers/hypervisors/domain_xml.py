"""Domain XML for the guests fleet creates itself (the lab, benchmarks, tests).

Two kinds: an OS-less guest (SeaBIOS loops, KVM when ``/dev/kvm`` opens) and a small
Linux under TCG that boots the machine's kernel with a busybox initramfs that fills and
keeps dirtying memory. Both log their serial console; no libvirt import is needed.
"""

from __future__ import annotations

import os
from xml.sax.saxutils import escape


def kvm_usable(device: str = "/dev/kvm") -> bool:
    """Whether /dev/kvm exists and opens read-write (else guests run under TCG)."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def _devices(console_log: str = "", network: str = "") -> str:
    """Serial console on a pty, or appended to ``console_log`` (a path on every host);
    with ``network``, one virtio interface on that libvirt network (no option ROM)."""
    serial = (f"<serial type='file'><source path='{escape(console_log)}' append='on'/>"
              "<target port='0'/></serial>") if console_log else (
        "<serial type='pty'><target port='0'/></serial>")
    nic = (f"<interface type='network'><source network='{escape(network)}'/>"
           "<model type='virtio'/><rom enabled='no'/></interface>") if network else ""
    return (
        f"<devices>{nic}{serial}<console type='{'file' if console_log else 'pty'}'>"
        "<target type='serial' port='0'/></console><memballoon model='none'/></devices>"
    )


def tiny_domain_xml(name: str, uuid: str, memory_mib: int = 64, vcpus: int = 1,
                    kvm: bool | None = None, network: str = "") -> str:
    """A guest with no OS (SeaBIOS finds nothing to boot and loops): KVM if usable."""
    kind = "kvm" if (kvm_usable() if kvm is None else kvm) else "qemu"
    return (
        f"<domain type='{kind}'><name>{escape(name)}</name><uuid>{escape(uuid)}</uuid>"
        f"<memory unit='MiB'>{memory_mib}</memory><vcpu>{vcpus}</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>"
        "<features><acpi/></features><on_crash>destroy</on_crash>"
        f"{_devices(network=network)}</domain>"
    )


def os_domain_xml(name: str, uuid: str, kernel: str, initrd: str, memory_mib: int = 256,
                  vcpus: int = 1, fill_mib: int = 100, dirty_mib_s: float = 4.0) -> str:
    """A small Linux under TCG: direct kernel boot of a busybox initramfs that fills
    ``fill_mib`` of tmpfs with random data and rewrites ``dirty_mib_s`` MiB each second."""
    cmdline = (f"console=ttyS0 quiet panic=5 fleet.fill={fill_mib}"
               f" fleet.dirty={max(0, round(dirty_mib_s))}")
    return (
        f"<domain type='qemu'><name>{escape(name)}</name><uuid>{escape(uuid)}</uuid>"
        f"<memory unit='MiB'>{memory_mib}</memory><vcpu>{vcpus}</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type>"
        f"<kernel>{escape(kernel)}</kernel><initrd>{escape(initrd)}</initrd>"
        f"<cmdline>{escape(cmdline)}</cmdline></os>"
        "<features><acpi/></features><on_crash>destroy</on_crash>"
        f"{_devices(f'/var/log/libvirt/qemu/{name}.console.log')}</domain>"
    )
