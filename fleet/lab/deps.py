"""What the lab needs from the machine, checked and (as root) installed.

``ensure_deps`` runs ``scripts/install-lab-deps`` (Debian packages, the qemu user and
libvirt-python into this interpreter) when something is missing, then checks again.
"""

from __future__ import annotations

import glob
import grp
import importlib.util
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

from fleet.lab.procs import LabError

BINARIES = ("libvirtd", "virtlogd", "virsh", "qemu-system-x86_64", "redis-server", "busybox",
            "nsenter", "unshare", "ip", "cpio", "gzip")
KERNEL_GLOB = "/boot/vmlinuz-*"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-lab-deps"


def missing_deps() -> list[str]:
    """What is absent: binaries, the libvirt-qemu user, libvirt-python, a kernel."""
    missing = [name for name in BINARIES if shutil.which(name) is None]
    try:
        pwd.getpwnam("libvirt-qemu")
        grp.getgrnam("libvirt-qemu")
        grp.getgrnam("kvm")
    except KeyError:
        missing.append("user/groups libvirt-qemu, kvm")
    if importlib.util.find_spec("libvirt") is None:
        missing.append("libvirt-python")
    if not glob.glob(KERNEL_GLOB):
        missing.append("a kernel in /boot")
    return missing


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, libvirtd)")


def ensure_deps(install: bool = True) -> None:
    """Install what is missing (``install``) or raise ``LabError`` naming it."""
    missing = missing_deps()
    if not missing:
        return
    if not install:
        raise LabError(f"lab prerequisites missing: {', '.join(missing)}"
                       f" (run {SCRIPT} as root)")
    if not SCRIPT.exists():
        raise LabError(f"lab prerequisites missing: {', '.join(missing)}; {SCRIPT} not found")
    done = subprocess.run([str(SCRIPT)], env={**os.environ, "PYTHON": sys.executable},
                          capture_output=True, text=True, check=False, timeout=900)
    importlib.invalidate_caches()
    still = missing_deps()
    if done.returncode != 0 or still:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["failed"]
        raise LabError(f"installing lab prerequisites failed ({', '.join(still)}): {tail[0]}")


def kernel_image() -> str:
    """The newest kernel image in /boot, for OS guests."""
    kernels = sorted(glob.glob(KERNEL_GLOB))
    if not kernels:
        raise LabError("no kernel in /boot for an OS guest (install linux-image-cloud-amd64)")
    return kernels[-1]
