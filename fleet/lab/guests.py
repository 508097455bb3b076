"""Guests of the lab: the busybox initramfs of OS guests, creating VMs on lab hosts, and
finding a guest's QEMU processes.

An OS-less guest is tiny (SeaBIOS loops, KVM when usable). An OS guest boots the
machine's kernel under TCG with a ~1 MB busybox initramfs whose init fills a tmpfs with
random data and rewrites a few MiB every second, so migrations have real dirty memory.
Sizes that ran here: 256 MiB guest, 100 MiB fill, <= 32 MiB of rewrites (160 + 48
panicked the guest kernel).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

from fleet.core.errors import InvalidInput
from fleet.core.hypervisor import HypervisorError
from fleet.core.models import VM
from fleet.core.names import check_name
from fleet.lab.config import LabConfig
from fleet.lab.deps import kernel_image
from fleet.lab.procs import LabError, run
from fleet.lab.services import lab_store
from workers.hypervisors.domain_xml import os_domain_xml, tiny_domain_xml
from workers.inventory import create_vm
from workers.procfs import netns_processes

OS_MEMORY_MIB = 256
OS_FILL_MIB = 100
MAX_DIRTY_MIB_S = 32
TINY_MEMORY_MIB = 64

INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /fill /tmp
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t devtmpfs dev /dev 2>/dev/null || mknod /dev/urandom c 1 9
fill=100; dirty=4
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    fleet.fill=*) fill=${arg#fleet.fill=} ;;
    fleet.dirty=*) dirty=${arg#fleet.dirty=} ;;
  esac
done
mount -t tmpfs -o size=$((fill + dirty + 8))m tmpfs /fill
echo "fleet-guest: filling ${fill} MiB"
dd if=/dev/urandom of=/fill/data bs=1M count="$fill" 2>/dev/null
echo "fleet-guest: ready, rewriting ${dirty} MiB/s"
while true; do
  [ "$dirty" -gt 0 ] && dd if=/dev/urandom of=/fill/hot bs=1M count="$dirty" \
    conv=notrunc 2>/dev/null
  sleep 1
done
"""


def build_initramfs(cfg: LabConfig) -> Path:
    """The gzip'd newc cpio of busybox-static and the init above (built once per lab)."""
    out = cfg.path / "guest" / "initrd.gz"
    if out.exists():
        return out
    busybox = shutil.which("busybox")
    if busybox is None:
        raise LabError("busybox not found (install busybox-static)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fleet-initrd-") as tmp:
        root = Path(tmp)
        (root / "bin").mkdir()
        shutil.copy2(busybox, root / "bin" / "busybox")
        (root / "init").write_text(INIT)
        (root / "init").chmod(0o755)
        partial = out.with_suffix(".tmp")
        run(["sh", "-c", f'cd "{root}" && find . | cpio -o -H newc --quiet | gzip -9 > "$0"',
             str(partial)])
        partial.replace(out)
    return out


def domain_xml(cfg: LabConfig, name: str, vm_uuid: str, memory_mib: int, os_guest: bool,
               dirty_mib_s: float) -> str:
    if not os_guest:
        return tiny_domain_xml(name, vm_uuid, memory_mib)
    if dirty_mib_s > MAX_DIRTY_MIB_S:
        raise InvalidInput(f"--dirty-mib-s must be at most {MAX_DIRTY_MIB_S}")
    fill = min(OS_FILL_MIB, max(0, memory_mib - 156))
    return os_domain_xml(name, vm_uuid, kernel_image(), str(build_initramfs(cfg)),
                         memory_mib, fill_mib=fill, dirty_mib_s=dirty_mib_s)


def create_lab_vm(cfg: LabConfig, name: str, host: str, memory_mib: int | None = None,
                  os_guest: bool = False, dirty_mib_s: float = 4.0, ha: bool = False,
                  priority: int = 0, group: str = "", rule: str = "") -> VM:
    """Define and start a VM on a lab host and record it in the lab's store."""
    check_name("VM", name)
    cfg.check_host(host)
    if group:
        check_name("group", group)
    memory = memory_mib or (OS_MEMORY_MIB if os_guest else TINY_MEMORY_MIB)
    if not 16 <= memory <= cfg.host_memory_mib:
        raise InvalidInput(f"--memory must be between 16 and {cfg.host_memory_mib} MiB")
    if dirty_mib_s < 0:
        raise InvalidInput("--dirty-mib-s must not be negative")
    vm_uuid = str(uuid.uuid4())
    xml = domain_xml(cfg, name, vm_uuid, memory, os_guest, dirty_mib_s)
    vm = VM(name, vm_uuid, host, 1, memory, ha=ha, priority=priority, group=group, rule=rule,
            definition=xml, dirty_mib_s=dirty_mib_s if os_guest else 0.0)
    hv = cfg.hypervisor(host)
    try:
        return create_vm(lab_store(cfg), hv, vm)
    except HypervisorError as exc:
        raise LabError(f"cannot start {name} on {host}: {exc}") from None
    finally:
        hv.close()


def remove_all_guests(cfg: LabConfig) -> None:
    """Destroy every guest on the lab's hosts and forget every VM of its store."""
    store = lab_store(cfg)
    for host in cfg.host_names():
        hv = cfg.hypervisor(host)
        try:
            for dom in hv.list_domains():
                hv.destroy(dom.name)
        finally:
            hv.close()
    for vm in store.list_vms():
        store.delete_vm(vm.name)


def qemu_pids(cfg: LabConfig, host: str, name: str) -> list[int]:
    """QEMU processes of guest ``name`` inside lab host ``host``'s namespace."""
    found = []
    for pid in netns_processes(cfg.netns(host)):  # every thread counts, see workers.procfs
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.startswith(b"qemu-system") or a.endswith(b"qemu-system-x86_64") for a in argv) \
                and f"guest={name},".encode() in b" ".join(argv):
            found.append(pid)
    return found
