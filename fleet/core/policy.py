"""Live-migration policy as small pure functions; config and clock values are passed in.

The runner samples job statistics about every half second and asks ``decide`` what to
do: carry on, raise the allowed downtime a step, switch to post-copy, or abort (after
which the VM keeps running on its source).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class PolicyConfig:
    """Policy knobs; per-VM overrides are applied with ``with_overrides``."""

    timeout_per_gib_s: float = 300.0
    timeout_min_s: float = 60.0
    stall_timeout_s: float = 20.0
    max_downtime_ms: int = 300
    downtime_steps: int = 5
    downtime_step_delay_s: float = 5.0
    downtime_ceiling_ms: int = 2000
    allow_postcopy: bool = False
    allow_auto_converge: bool = True
    bandwidth_mib_s: float = 0.0  # 0: unlimited

    def with_overrides(self, overrides: dict[str, Any]) -> PolicyConfig:
        """A copy with the known keys of ``overrides`` applied (unknown keys ignored)."""
        known = {k: v for k, v in overrides.items() if k in self.__dataclass_fields__}
        return replace(self, **known)


class Verdict(StrEnum):
    CONTINUE = "continue"
    RAISE_DOWNTIME = "raise_downtime"
    POSTCOPY = "postcopy"
    ABORT = "abort"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str = ""
    downtime_ms: int = 0


@dataclass
class Watch:
    """What the runner remembers between samples of one migration."""

    started_at: float
    best_remaining: float = float("inf")
    last_progress_at: float = 0.0
    downtime_step: int = 0
    postcopy: bool = False
    history: list[tuple[float, float]] = field(default_factory=list)


def completion_timeout_s(memory_mib: float, cfg: PolicyConfig) -> float:
    """Time budget of a migration: per GiB of guest memory, with a floor."""
    return max(cfg.timeout_min_s, cfg.timeout_per_gib_s * memory_mib / 1024.0)


def downtime_steps(cfg: PolicyConfig) -> list[int]:
    """Allowed downtime per step, from the configured value up to the ceiling."""
    if cfg.downtime_steps <= 1:
        return [cfg.max_downtime_ms]
    span = max(0, cfg.downtime_ceiling_ms - cfg.max_downtime_ms)
    last = cfg.downtime_steps - 1
    return [cfg.max_downtime_ms + span * i // last for i in range(cfg.downtime_steps)]


def observe(watch: Watch, remaining_mib: float, now: float) -> None:
    """Record a sample; progress means data remaining fell below its best so far."""
    watch.history.append((now, remaining_mib))
    if remaining_mib < watch.best_remaining:
        watch.best_remaining = remaining_mib
        watch.last_progress_at = now


def is_stalled(watch: Watch, now: float, cfg: PolicyConfig) -> bool:
    """No decrease of data remaining for the stall timeout."""
    since = watch.last_progress_at or watch.started_at
    return now - since > cfg.stall_timeout_s


def should_abort(watch: Watch, memory_mib: float, now: float, cfg: PolicyConfig) -> str:
    """Why the migration must end now, or "" if it may go on."""
    if watch.postcopy:
        return ""
    if is_stalled(watch, now, cfg):
        return f"stalled: data remaining did not fall for {cfg.stall_timeout_s:.0f}s"
    if now - watch.started_at > completion_timeout_s(memory_mib, cfg):
        return "did not complete within its time budget"
    return ""


def next_downtime(watch: Watch, now: float, cfg: PolicyConfig) -> int:
    """The downtime step due at ``now``, or 0 when no new step is due."""
    steps = downtime_steps(cfg)
    due = min(len(steps) - 1, int((now - watch.started_at) // cfg.downtime_step_delay_s))
    return steps[due] if due > watch.downtime_step else 0


def decide(watch: Watch, memory_mib: float, now: float, cfg: PolicyConfig) -> Decision:
    """What to do with a running migration after observing a sample."""
    reason = should_abort(watch, memory_mib, now, cfg)
    if reason:
        if cfg.allow_postcopy:
            return Decision(Verdict.POSTCOPY, reason)
        return Decision(Verdict.ABORT, reason)
    downtime = next_downtime(watch, now, cfg)
    if downtime:
        return Decision(Verdict.RAISE_DOWNTIME, "downtime step", downtime)
    return Decision(Verdict.CONTINUE)


def progress_percent(processed_mib: float, remaining_mib: float, total_mib: float) -> float:
    """A monotone-ish completion estimate: first pass by data, then by what is left."""
    if total_mib <= 0:
        return 0.0
    sent_share = processed_mib / (processed_mib + remaining_mib) if processed_mib else 0.0
    return round(min(99.9, 100.0 * sent_share), 1)


def eta_s(remaining_mib: float, mib_s: float, dirty_mib_s: float) -> float:
    """Seconds left if the link keeps outrunning the dirtying; inf when it does not."""
    net = mib_s - dirty_mib_s
    return remaining_mib / net if net > 0 else float("inf")
