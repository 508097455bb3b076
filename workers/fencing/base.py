"""The fence-agent port and the one rule every agent follows: off means *confirmed* off.

A ``FenceAgent`` can ``power_off`` a host and report its ``power_state`` through a path
that does not depend on the host itself (a BMC, a PDU, the lab's power switch). Its
``fence(host, timeout_s, clock)`` succeeds only when a status check confirmed the host
is off within ``timeout_s``; an error, an unknown state or running out of time is a
failure, and the monitor keeps the host's VMs where they are.

``ConfirmingAgent.fence`` implements that rule once for all agents built on
``power_off`` + ``power_state``: send power-off, then poll the state every ``poll_s``
(re-sending power-off every ``resend_s`` while the host still says on) until it reads
off or the deadline passes. Each agent bounds its own calls with ``command_timeout_s``,
so a fence takes at most ``timeout_s`` plus one command timeout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from fleet.core.errors import FleetError
from fleet.core.failover import FenceResult
from workers.secretfile import read_private


class FenceError(FleetError):
    """Power-off could not be sent or its state could not be read."""


class FenceTimeout(FenceError):
    """A fence device did not answer in time; a timeout is a failure."""


def read_secret(path: str, who: str) -> str:
    """The secret in file ``path`` (stripped), refused unless only its owner may read it."""
    return read_private(path, f"{who} password file", FenceError).decode().strip()


class PowerState(StrEnum):
    """A host's power as its fence device reports it."""

    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class FenceOutcome:
    """How one fence attempt ended; ``ok`` only when power-off was confirmed."""

    host: str
    ok: bool
    state: PowerState
    detail: str
    elapsed_s: float = 0.0
    needs_operator: bool = False

    def event(self) -> FenceResult:
        """The monitor's ``FenceResult`` for this outcome."""
        return FenceResult(self.host, self.ok, self.detail, self.needs_operator)


class Clock(Protocol):
    """Time as fencing sees it: a monotonic reading and a way to wait."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real monotonic clock."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class FenceAgent(Protocol):
    """One host's fence device."""

    kind: str

    def power_off(self, host: str) -> None:
        """Ask for a hard power-off; raises ``FenceError``/``FenceTimeout``."""
        ...

    def power_state(self, host: str) -> PowerState:
        """The power state as the device reports it; raises ``FenceError``."""
        ...

    def fence(self, host: str, timeout_s: float, clock: Clock) -> FenceOutcome:
        """Power off and confirm off within ``timeout_s``."""
        ...


class ConfirmingAgent:
    """Mixin: ``fence`` = power-off, then poll ``power_state`` until off or timeout."""

    poll_s: float = 1.0
    resend_s: float = 5.0

    def power_off(self, host: str) -> None:
        raise NotImplementedError

    def power_state(self, host: str) -> PowerState:
        raise NotImplementedError

    def fence(self, host: str, timeout_s: float, clock: Clock) -> FenceOutcome:
        """See the module doc."""
        start = clock.now()
        deadline = start + timeout_s

        def outcome(ok: bool, state: PowerState, detail: str) -> FenceOutcome:
            return FenceOutcome(host, ok, state, detail, clock.now() - start)

        try:
            self.power_off(host)
        except (FenceError, OSError) as exc:
            return outcome(False, PowerState.UNKNOWN, f"power-off failed: {exc}")
        sent = clock.now()
        state, note = PowerState.UNKNOWN, ""
        while True:
            if clock.now() >= deadline:
                why = f"; last error: {note}" if note else ""
                return outcome(False, state, f"timed out after {timeout_s:g}s "
                               f"waiting for power off (state {state.value}{why})")
            state, note = self._read(host)
            if state is PowerState.OFF:
                return outcome(True, state, "power off confirmed")
            if state is PowerState.ON and clock.now() - sent >= self.resend_s:
                note = self._resend(host) or note
                sent = clock.now()
            clock.sleep(min(self.poll_s, max(0.0, deadline - clock.now())))

    def _read(self, host: str) -> tuple[PowerState, str]:
        try:
            return self.power_state(host), ""
        except (FenceError, OSError) as exc:
            return PowerState.UNKNOWN, str(exc)

    def _resend(self, host: str) -> str:
        try:
            self.power_off(host)
        except (FenceError, OSError) as exc:
            return str(exc)
        return ""


def run_fence(agent: FenceAgent, host: str, timeout_s: float,
              clock: Clock | None = None) -> FenceOutcome:
    """``agent.fence`` with the system clock by default; never raises ``FenceError``."""
    clock = clock or SystemClock()
    start = clock.now()
    try:
        return agent.fence(host, timeout_s, clock)
    except (FenceError, OSError) as exc:
        return FenceOutcome(host, False, PowerState.UNKNOWN, f"fence failed: {exc}",
                            clock.now() - start)
