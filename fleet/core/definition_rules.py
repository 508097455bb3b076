"""What a domain definition may ask of a host before fleet hands it to libvirt.

A VM's stored definition comes from Redis, and whoever can write there could otherwise
make a host run a program (``<qemu:commandline>``, a foreign ``<emulator>``, an interface
``<script>``) or hand a guest the host's own files (a disk on ``/etc/shadow`` or
``/dev/sda``). ``definition_problems`` lists what breaks the rules:

- nothing from QEMU's XML namespace (command-line arguments, capabilities, overrides);
- no ``<script>`` (an interface's host-side script); domain ``type`` kvm or qemu only;
- the emulator, when given, is a QEMU binary inside the allowed roots;
- every host path the guest opens (disk, backing store and filesystem sources, char
  device files and sockets, logs, kernel, initrd, firmware, NVRAM) lies inside the
  allowed roots, spelt without ``..``.

Pure: XML in, a list of one-line problems out (empty when the definition may be defined).
"""

from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
DEFAULT_ROOTS = ("/var/lib/libvirt", "/var/log/libvirt", "/usr/bin", "/usr/libexec",
                 "/usr/share/qemu", "/usr/share/seabios", "/usr/share/OVMF",
                 "/usr/share/AAVMF", "/usr/share/edk2")
"""Where a definition's host paths may lie unless configured (``domain_roots``)."""
EMULATOR = re.compile(r"qemu-system-[a-z0-9_]+|qemu-kvm|kvm")
OS_PATHS = ("os/kernel", "os/initrd", "os/loader", "os/nvram", "os/dtb")
SOURCE_ATTRS = ("file", "dir", "dev", "path", "socket")
NO_HOST_PATH = frozenset({"pty", "vc", "null", "spicevmc", "stdio", "tcp", "udp",
                          "network", "volume", "rbd", "nbd", "iscsi"})
"""Source types whose ``path`` is not a host file fleet must judge (a pty's path is
libvirt's own; network disks have no host path)."""


def inside(path: str, roots: Sequence[str]) -> bool:
    """Whether absolute ``path`` (with no ``..``) lies in one of ``roots``."""
    if not path.startswith("/") or ".." in path.split("/"):
        return False
    clean = posixpath.normpath(path)
    return any(clean == r.rstrip("/") or clean.startswith(r.rstrip("/") + "/")
               for r in roots if r.startswith("/"))


def definition_problems(xml: str, roots: Sequence[str] = DEFAULT_ROOTS) -> list[str]:
    """What in domain definition ``xml`` breaks the rules above (empty: none)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        return [f"not XML: {exc}"]
    if root.tag != "domain":
        return [f"not a domain definition: <{root.tag}>"]
    problems = []
    if root.get("type") not in ("kvm", "qemu"):
        problems.append(f"domain type {root.get('type')!r} is not kvm or qemu")
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag.startswith(f"{{{QEMU_NS}}}"):
            problems.append(f"<qemu:{element.tag.split('}', 1)[1]}> passes options to QEMU")
        elif element.tag == "script":
            problems.append(f"<script path={element.get('path')!r}> runs a host program")
    problems += _emulator(root, roots)
    problems += [f"{what} {path!r} is outside the allowed roots ({', '.join(roots)})"
                 for what, path in _host_paths(root) if not inside(path, roots)]
    return list(dict.fromkeys(problems))


def _emulator(root: ET.Element, roots: Sequence[str]) -> list[str]:
    emulator = (root.findtext("devices/emulator") or "").strip()
    if not emulator:
        return []
    if not EMULATOR.fullmatch(posixpath.basename(emulator)):
        return [f"emulator {emulator!r} is not a QEMU binary"]
    return [] if inside(emulator, roots) else [
        f"emulator {emulator!r} is outside the allowed roots ({', '.join(roots)})"]


def _host_paths(root: ET.Element) -> Iterator[tuple[str, str]]:
    """(what, path) for every host path the definition names."""
    for where in OS_PATHS:
        for element in root.findall(where):
            if (element.text or "").strip():
                yield where.split("/")[1], (element.text or "").strip()
    for parent in root.iter():
        if parent.tag != "interface":  # a NIC's source names a network, bridge or NIC
            yield from _device_paths(parent)


def _device_paths(parent: ET.Element) -> Iterator[tuple[str, str]]:
    kind = parent.get("type", "")
    for child in parent:
        if child.tag == "source" and kind not in NO_HOST_PATH:
            yield from ((f"<{parent.tag}> source", str(child.get(attr)))
                        for attr in SOURCE_ATTRS if child.get(attr))
        elif child.tag == "log" and child.get("file"):
            yield f"<{parent.tag}> log", str(child.get("file"))
