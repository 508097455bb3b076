"""What ``/proc`` says about processes, counted per thread.

A process whose main thread has exited shows ``Z`` in ``/proc/PID/stat`` and has no
readable ``/proc/PID/ns/net``, yet its other threads may still run — with its open files,
its listening sockets and, for QEMU, its vCPUs. ``ps`` shows such a process as ``Zl``;
``ip netns pids`` does not list it at all. SIGKILLed multi-threaded daemons (libvirtd,
QEMU) pass through that state, for longer on a loaded machine. Power-off may only be
confirmed once no thread is left, so both questions here are asked of every thread.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
DEAD = ("Z", "X", "x")


def _task_state(stat_path: Path) -> str | None:
    try:
        stat = stat_path.read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[0] if fields else None


def alive(pid: int) -> bool:
    """Whether some thread of process ``pid`` still runs (a reaped or zombie one: no)."""
    if pid <= 0:
        return False
    state = _task_state(PROC / str(pid) / "stat")
    if state is None:
        return False
    if state not in DEAD:
        return True
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return False
    return any(_task_state(t / "stat") not in (None, *DEAD) for t in tasks)


def _ns_id(path: str | Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _in_namespace(pid_dir: Path, target: tuple[int, int]) -> bool:
    try:
        tasks = list((pid_dir / "task").iterdir())
    except OSError:
        return False
    return any(_ns_id(t / "ns" / "net") == target for t in tasks)


def netns_processes(netns: str) -> list[int]:
    """Every process with a thread in the named network namespace (``/run/netns/NAME``);
    none if the namespace does not exist."""
    return processes_in(f"/run/netns/{netns}")


def processes_in(ns_file: str | Path) -> list[int]:
    """Every process with a thread in the network namespace that ``ns_file`` (a bind
    mount or a ``/proc/PID/ns/net`` link) refers to; none if it does not exist."""
    target = _ns_id(ns_file)
    if target is None:
        return []
    pids = (int(p.name) for p in PROC.iterdir() if p.name.isdigit())
    return sorted(pid for pid in pids if _in_namespace(PROC / str(pid), target))
