"""The lab's power switch: a lab host is off when no process is left in its namespace.

``power_off`` kills (SIGKILL) every process of the host's network namespace, as a power
loss would; ``power_state`` is OFF once no thread is left in it. Threads, not processes:
``ip netns pids`` misses a process whose main thread already died while its other threads
(QEMU's vCPUs) still run, see ``workers.procfs``.
"""

from __future__ import annotations

import os
import signal

from workers.fencing.base import ConfirmingAgent, PowerState
from workers.procfs import netns_processes


class LabFenceAgent(ConfirmingAgent):
    """Powers off a lab host by killing everything in its namespace."""

    kind = "lab"
    poll_s = 0.2
    resend_s = 1.0

    def __init__(self, netns: str = "fleet-{host}") -> None:
        self.netns = netns

    def power_off(self, host: str) -> None:
        for pid in netns_processes(self.netns.format(host=host)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue

    def power_state(self, host: str) -> PowerState:
        return PowerState.ON if netns_processes(self.netns.format(host=host)) else PowerState.OFF
