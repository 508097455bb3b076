"""A child subreaper for a lab host's libvirtd, run as a script (no fleet imports).

QEMU processes are daemonized by libvirtd, so they are re-parented to the nearest
subreaper, normally pid 1. When a migrated-away guest's QEMU exits, libvirtd waits until
its pid is gone; a pid 1 that reaps zombies slowly adds seconds to every migration. This
script becomes a subreaper, runs ``argv`` as its child, forwards SIGTERM/SIGINT/SIGHUP to
it and reaps every orphan at once. It exits when it has no children left.

Usage: ``python3 reaper.py libvirtd -l ...``
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from types import FrameType

PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write("usage: reaper.py COMMAND [ARGS...]\n")
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.stderr.write(f"reaper: prctl failed: {os.strerror(ctypes.get_errno())}\n")
    child = os.fork()
    if child == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)

    def forward(signum: int, _frame: FrameType | None) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            return

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    code = 0
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return code
        if pid == child:
            code = os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
