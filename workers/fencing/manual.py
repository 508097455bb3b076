"""Manual fencing: fleet cannot power the host off, an operator must.

``fence`` never confirms anything by itself: it returns a failed outcome marked
``needs_operator`` whose detail tells the operator what to do. The monitor then keeps
the host ``fence_failed`` without retrying until ``fleet host confirm-down H``.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.fencing.base import Clock, FenceError, FenceOutcome, PowerState


@dataclass
class ManualAgent:
    """The fence agent of hosts with no remote power control."""

    note: str = ""
    kind: str = "manual"

    def power_off(self, host: str) -> None:
        raise FenceError(f"{host}: manual fencing; an operator must power it off")

    def power_state(self, host: str) -> PowerState:
        return PowerState.UNKNOWN

    def fence(self, host: str, timeout_s: float, clock: Clock) -> FenceOutcome:
        hint = f" ({self.note})" if self.note else ""
        return FenceOutcome(host, False, PowerState.UNKNOWN,
                            f"manual fencing{hint}: power off {host}, check it is off, then "
                            f"run `fleet host confirm-down {host}`", needs_operator=True)
