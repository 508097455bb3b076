"""A pre-copy live-migration model: memory size, bandwidth and dirty rate to iterations.

The sim hypervisor advances this model with (scaled) wall time, so simulated migrations
report the same kind of statistics libvirt does: data processed and remaining, iteration,
dirty rate and expected downtime. Pure arithmetic, no clock of its own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PrecopyModel:
    """State of one simulated pre-copy migration, advanced by ``advance(dt)``."""

    memory_mib: float
    bandwidth_mib_s: float
    dirty_mib_s: float
    max_downtime_ms: float = 300.0
    processed_mib: float = 0.0
    iteration: int = 1
    pending_mib: float = -1.0  # left to send in this iteration
    dirtied_mib: float = 0.0  # dirtied since this iteration began
    elapsed_s: float = 0.0
    done: bool = False
    downtime_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.memory_mib <= 0 or self.bandwidth_mib_s <= 0:
            raise ValueError("memory and bandwidth must be positive")
        if self.pending_mib < 0:
            self.pending_mib = self.memory_mib

    @property
    def remaining_mib(self) -> float:
        """What libvirt calls data remaining: unsent plus re-dirtied memory."""
        return 0.0 if self.done else min(self.memory_mib, self.pending_mib + self.dirtied_mib)

    @property
    def expected_downtime_ms(self) -> float:
        return self.remaining_mib / self.bandwidth_mib_s * 1000.0

    def advance(self, dt: float) -> None:
        """Move the model forward by ``dt`` seconds of migration time."""
        while dt > 1e-9 and not self.done:
            step = min(dt, self.pending_mib / self.bandwidth_mib_s)
            self._send(step)
            dt -= step
            if self.pending_mib <= 1e-9:
                self._end_iteration()

    def _send(self, seconds: float) -> None:
        sent = seconds * self.bandwidth_mib_s
        self.pending_mib = max(0.0, self.pending_mib - sent)
        self.processed_mib += sent
        self.dirtied_mib = min(self.memory_mib, self.dirtied_mib + seconds * self.dirty_mib_s)
        self.elapsed_s += seconds

    def _end_iteration(self) -> None:
        downtime = self.dirtied_mib / self.bandwidth_mib_s * 1000.0
        if downtime <= self.max_downtime_ms:
            self.processed_mib += self.dirtied_mib
            self.elapsed_s += downtime / 1000.0
            self.downtime_ms = downtime
            self.dirtied_mib = 0.0
            self.done = True
            return
        self.iteration += 1
        self.pending_mib = self.dirtied_mib
        self.dirtied_mib = 0.0

    def converges(self) -> bool:
        """Whether pre-copy can ever finish: the link outruns the dirtying."""
        return self.dirty_mib_s < self.bandwidth_mib_s
