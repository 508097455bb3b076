"""Processes of the lab: run a command, spawn a detached daemon, probe and kill by pid.

Daemons are spawned detached (their own session, re-parented away from the caller) so a
``fleet lab up`` can exit and leave them running; their pid is returned to be recorded.
A process counts as alive while any of its threads runs (``workers.procfs``): a zombie
main thread with live threads is not dead yet. Nothing here kills by name: only by pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from fleet.core.errors import FleetError
from workers.procfs import alive

__all__ = ["LabError", "alive", "kill", "run", "spawn", "stop", "wait_until"]


class LabError(FleetError):
    """The lab could not be built or changed (exit code 1)."""


_SPAWN = 'LOG="$1"; shift; "$@" </dev/null >>"$LOG" 2>&1 & echo $!'


def run(argv: Sequence[str], check: bool = True, timeout: float = 60.0) -> str:
    """Run ``argv``; its stdout, or ``LabError`` with its first stderr line if it fails."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{argv[0]}: {exc}") from None
    if check and done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip() or "failed").splitlines()[0]
        raise LabError(f"{' '.join(argv[:4])}: {detail}")
    return done.stdout


def spawn(argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` detached with output appended to ``log``; its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["sh", "-c", _SPAWN, "sh", str(log), *argv], capture_output=True,
                         text=True, env=env, start_new_session=True, check=False, timeout=30)
    try:
        return int(out.stdout.strip())
    except ValueError:
        raise LabError(f"could not start {argv[0]}: {out.stderr.strip()}") from None


def kill(pids: Iterable[int], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to each live pid; vanished ones are fine."""
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue


def stop(pids: Iterable[int], grace_s: float = 3.0) -> None:
    """SIGTERM, then SIGKILL whatever is still alive after ``grace_s``."""
    pids = [p for p in pids if alive(p)]
    kill(pids, signal.SIGTERM)
    wait_until(lambda: not any(alive(p) for p in pids), grace_s, "", fail=False)
    kill(pids, signal.SIGKILL)
    wait_until(lambda: not any(alive(p) for p in pids), 5.0, "processes to die", fail=False)


def wait_until(pred: Callable[[], bool], timeout_s: float, what: str,
               fail: bool = True, interval_s: float = 0.05) -> bool:
    """Poll ``pred`` until true; ``LabError`` (or False) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            if fail:
                raise LabError(f"timed out after {timeout_s:.0f}s waiting for {what}")
            return False
        time.sleep(interval_s)

