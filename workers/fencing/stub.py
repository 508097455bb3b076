"""A scriptable in-process fence agent and a fake clock, for tests and demos.

``StubAgent`` keeps a power state per host. Its behaviour is scripted: each call of
``power_off`` takes the next word of ``script`` (the last one repeats):

* ``ok``: the host goes off after ``off_after_s`` seconds of the clock;
* ``fail``: raises ``FenceError`` (device refused or unreachable);
* ``hang``: blocks for ``hang_s`` seconds of the clock, then raises ``FenceTimeout``;
* ``ignore``: accepted, but the host stays on (a lost command);

and ``status`` scripts ``power_state`` the same way: ``true`` (report the real state),
``on`` (always claims on), ``error`` (raises) or ``unknown``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workers.fencing.base import (
    Clock,
    ConfirmingAgent,
    FenceError,
    FenceTimeout,
    PowerState,
)


@dataclass
class FakeClock:
    """A clock that only moves when slept on or advanced."""

    t: float = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class StubAgent(ConfirmingAgent):
    """See the module doc; ``calls`` records every call as ``"op host"``."""

    clock: Clock = field(default_factory=FakeClock)
    script: list[str] = field(default_factory=lambda: ["ok"])
    status: list[str] = field(default_factory=lambda: ["true"])
    off_after_s: float = 0.0
    hang_s: float = 60.0
    poll_s: float = 0.5
    resend_s: float = 5.0
    kind: str = "stub"
    power: dict[str, PowerState] = field(default_factory=dict)
    off_at: dict[str, float] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    @staticmethod
    def _next(words: list[str], index: int) -> str:
        return words[min(index, len(words) - 1)]

    def power_off(self, host: str) -> None:
        word = self._next(self.script, sum(c.startswith("off ") for c in self.calls))
        self.calls.append(f"off {host}")
        if word == "fail":
            raise FenceError(f"{host}: BMC refused power-off")
        if word == "hang":
            self.clock.sleep(self.hang_s)
            raise FenceTimeout(f"{host}: BMC did not answer in {self.hang_s:g}s")
        if word == "ok" and host not in self.off_at:
            self.off_at[host] = self.clock.now() + self.off_after_s

    def power_state(self, host: str) -> PowerState:
        word = self._next(self.status, sum(c.startswith("status ") for c in self.calls))
        self.calls.append(f"status {host}")
        if word == "error":
            raise FenceError(f"{host}: status query failed")
        if word == "on":
            return PowerState.ON
        if word == "unknown":
            return PowerState.UNKNOWN
        if host in self.off_at and self.clock.now() >= self.off_at[host]:
            self.power[host] = PowerState.OFF
        return self.power.get(host, PowerState.ON)

    def power_on(self, host: str) -> None:
        """Bring a host back (tests)."""
        self.off_at.pop(host, None)
        self.power[host] = PowerState.ON
