"""The fence agent of simulated hosts: cuts their power in Redis and reads it back."""

from __future__ import annotations

from workers.fencing.base import ConfirmingAgent, FenceError, PowerState
from workers.hypervisors.sim import SimHypervisor


class SimFenceAgent(ConfirmingAgent):
    """Powers off a sim host; ``fail=True`` makes its "BMC" unreachable (fence failures)."""

    kind = "sim"
    poll_s = 0.2

    def __init__(self, hypervisor: SimHypervisor, fail: bool = False) -> None:
        self.hv = hypervisor
        self.fail = fail

    def power_off(self, host: str) -> None:
        if self.fail:
            raise FenceError(f"no answer from the power controller of {host}")
        self.hv.power_off()

    def power_state(self, host: str) -> PowerState:
        if self.fail:
            raise FenceError(f"no answer from the power controller of {host}")
        return PowerState.ON if self.hv.powered() else PowerState.OFF
