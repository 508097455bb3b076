"""Per-host health for failover: states, thresholds and the single-host state machine.

A host moves ``active → suspect → down → fencing → fenced → recovering → recovered``;
``fence_failed`` is where a host waits when fencing did not confirm power-off (it retries
a few times, then needs an operator). Every function here is pure: the clock value
``now`` and the heartbeat age are passed in, nothing reads the time.

Heartbeat-driven rules (``step_host``):

* ``active``: age ≥ ``suspect_after_s`` → ``suspect``; age ≥ ``down_after_s`` → ``down``.
* ``suspect``: a fresh heartbeat → ``active``; age ≥ ``down_after_s`` → ``down``.
* ``down``: a fresh heartbeat → ``active`` (nothing was done yet); otherwise, when
  fencing is allowed (leader, no storm), → ``fencing``.
* The witness: a host whose agent went silent but whose hypervisor still answers the
  monitor's probe (``witnessed``) is alive — only its agent died. It stays ``suspect``
  (a ``down`` host goes back to ``suspect``) with one ``agent_silent`` alert, and is
  never fenced while the probe answers; when the probe stops answering too, it goes
  ``down`` as usual. The witness can only hold fencing back, never cause it.
* ``fencing``: waits for the fence result; no result by the deadline is a failure.
* ``fence_failed``: a fresh heartbeat → ``active`` (nothing was restarted, the host kept
  its VMs); otherwise retried after ``fence_retry_s`` up to ``fence_attempts`` attempts.
* ``fenced``/``recovering``/``recovered``: the host is confirmed off; heartbeats that
  come back are reported once, and only an operator's activate makes it ``active``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from fleet.core.errors import InvalidInput, InvalidTransition


class Health(StrEnum):
    """Failover state of one host."""

    ACTIVE = "active"
    SUSPECT = "suspect"
    DOWN = "down"
    FENCING = "fencing"
    FENCED = "fenced"
    FENCE_FAILED = "fence_failed"
    RECOVERING = "recovering"
    RECOVERED = "recovered"


_H = Health
TRANSITIONS: dict[Health, frozenset[Health]] = {
    _H.ACTIVE: frozenset({_H.SUSPECT, _H.DOWN, _H.FENCING, _H.FENCED}),
    _H.SUSPECT: frozenset({_H.ACTIVE, _H.DOWN, _H.FENCING, _H.FENCED}),
    _H.DOWN: frozenset({_H.ACTIVE, _H.SUSPECT, _H.FENCING, _H.FENCED}),
    _H.FENCING: frozenset({_H.FENCED, _H.FENCE_FAILED}),
    _H.FENCE_FAILED: frozenset({_H.ACTIVE, _H.FENCING, _H.FENCED}),
    _H.FENCED: frozenset({_H.RECOVERING}),
    _H.RECOVERING: frozenset({_H.RECOVERED}),
    _H.RECOVERED: frozenset({_H.ACTIVE}),
}
"""Allowed host transitions; ``→ fenced`` from before ``fencing`` is an operator's confirm."""

PRE_FENCE = frozenset({_H.ACTIVE, _H.SUSPECT, _H.DOWN, _H.FENCE_FAILED})
"""States in which the host may still be running its VMs."""

CONFIRMED_OFF = frozenset({_H.FENCED, _H.RECOVERING, _H.RECOVERED})
"""States in which the host is known to be off: its VMs may be restarted elsewhere."""


@dataclass(frozen=True)
class FailoverConfig:
    """Failover thresholds. Defaults aim at ≤ 15 s from power loss to VMs running again."""

    suspect_after_s: float = 3.0
    down_after_s: float = 5.0
    fence_timeout_s: float = 20.0
    fence_grace_s: float = 5.0
    fence_attempts: int = 3
    fence_retry_s: float = 5.0
    storm_share: float = 0.5
    recover_timeout_s: float = 60.0
    exclude_for_s: float = 60.0
    lease_ttl_s: float = 5.0
    witness_window_s: float = 3.0

    def __post_init__(self) -> None:
        if not 0 < self.suspect_after_s <= self.down_after_s:
            raise InvalidInput("failover: need 0 < suspect_after_s <= down_after_s")
        if self.fence_timeout_s <= 0 or self.fence_grace_s < 0 or self.fence_retry_s < 0:
            raise InvalidInput("failover: fence timeouts must be positive")
        if self.fence_attempts < 1:
            raise InvalidInput("failover: fence_attempts must be at least 1")
        if not 0 < self.storm_share <= 1:
            raise InvalidInput("failover: storm_share must be in (0, 1]")
        if self.recover_timeout_s <= 0 or self.exclude_for_s < 0 or self.lease_ttl_s <= 0:
            raise InvalidInput("failover: recovery and lease timeouts must be positive")
        if self.witness_window_s < 0:
            raise InvalidInput("failover: witness_window_s must not be negative")

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> FailoverConfig:
        """Build from a settings mapping; keys may carry a ``failover_`` prefix."""
        known = cls.__dataclass_fields__
        values: dict[str, Any] = {}
        for key, value in data.items():
            name = key.removeprefix("failover_")
            if name in known:
                values[name] = value
        return cls(**values)


@dataclass(frozen=True)
class HostHealth:
    """What the monitor remembers about one host."""

    state: Health = Health.ACTIVE
    since: float = 0.0
    attempts: int = 0
    deadline: float = 0.0
    detail: str = ""
    confirmed_by: str = ""
    returned: bool = False
    last_beat: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state.value, "since": self.since, "attempts": self.attempts,
                "deadline": self.deadline, "detail": self.detail,
                "confirmed_by": self.confirmed_by, "returned": self.returned,
                "last_beat": self.last_beat}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostHealth:
        return cls(state=Health(data.get("state", "active")),
                   since=float(data.get("since", 0.0)),
                   attempts=int(data.get("attempts", 0)),
                   deadline=float(data.get("deadline", 0.0)),
                   detail=str(data.get("detail", "")),
                   confirmed_by=str(data.get("confirmed_by", "")),
                   returned=bool(data.get("returned", False)),
                   last_beat=float(data.get("last_beat", 0.0)))


def check_transition(current: Health, target: Health) -> None:
    """Raise ``InvalidTransition`` unless ``current → target`` is allowed."""
    if target is not current and target not in TRANSITIONS[current]:
        raise InvalidTransition(f"host cannot go from {current} to {target}")


def move(h: HostHealth, target: Health, now: float, **changes: Any) -> HostHealth:
    """``h`` in ``target`` since ``now`` (checked against ``TRANSITIONS``)."""
    check_transition(h.state, target)
    return replace(h, state=target, since=now, **changes)


def start_fencing(h: HostHealth, cfg: FailoverConfig, now: float, reset: bool = False,
                  ) -> HostHealth:
    """``h`` moved to ``fencing`` with a fresh deadline and one more attempt counted."""
    attempts = 1 if reset else h.attempts + 1
    return move(h, Health.FENCING, now, attempts=attempts,
                deadline=now + cfg.fence_timeout_s + cfg.fence_grace_s,
                detail=f"fence attempt {attempts}")


def liveness(age: float, cfg: FailoverConfig) -> Health:
    """What a heartbeat age alone says: ``active``, ``suspect`` or ``down``."""
    if age >= cfg.down_after_s:
        return Health.DOWN
    if age >= cfg.suspect_after_s:
        return Health.SUSPECT
    return Health.ACTIVE


@dataclass(frozen=True)
class Step:
    """Result of one host step: the new health, whether to fence, a note to alert."""

    health: HostHealth
    fence: bool = False
    alert: str = ""
    via: tuple[HostHealth, ...] = ()


WITNESSED = "agent silent; the host answers the witness probe"


def _step_alive(h: HostHealth, seen: Health, witnessed: bool, now: float) -> Step:
    """Heartbeat-driven moves among ``active``, ``suspect`` and ``down``."""
    if seen is Health.DOWN and witnessed:
        if h.state is Health.SUSPECT and h.detail == WITNESSED:
            return Step(h)
        return Step(move(h, Health.SUSPECT, now, detail=WITNESSED), alert="agent_silent")
    if seen is h.state or (seen is Health.SUSPECT and h.state is Health.DOWN):
        return Step(h)
    if seen is Health.ACTIVE and h.state is Health.DOWN:
        return Step(move(h, Health.ACTIVE, now, detail="heartbeat back"), alert="host_back")
    return Step(move(h, seen, now, detail=f"heartbeat {seen.value}"))


def step_host(h: HostHealth, age: float, may_fence: bool, cfg: FailoverConfig,
              now: float, witnessed: bool = False) -> Step:
    """Advance one non-maintenance host given its heartbeat age; see the module doc."""
    seen = liveness(age, cfg)
    if h.state in (Health.ACTIVE, Health.SUSPECT, Health.DOWN):
        step = _step_alive(h, seen, witnessed, now)
        if step.health.state is Health.DOWN and may_fence:
            return Step(start_fencing(step.health, cfg, now), fence=True, via=(step.health,))
        return step
    if h.state is Health.FENCING:
        return _step_fencing(h, now)
    if h.state is Health.FENCE_FAILED:
        return _step_fence_failed(h, seen, may_fence, cfg, now)
    if seen is Health.ACTIVE and not h.returned:
        return Step(replace(h, returned=True), alert="host_returned")
    return Step(h)


def _step_fencing(h: HostHealth, now: float) -> Step:
    if now >= h.deadline:
        return Step(move(h, Health.FENCE_FAILED, now, detail="fence timed out"),
                    alert="fence_failed")
    return Step(h)


def _step_fence_failed(h: HostHealth, seen: Health, may_fence: bool, cfg: FailoverConfig,
                       now: float) -> Step:
    if seen is Health.ACTIVE:
        return Step(move(h, Health.ACTIVE, now, attempts=0, detail="heartbeat back"),
                    alert="host_back")
    retry = h.attempts < cfg.fence_attempts and now - h.since >= cfg.fence_retry_s
    if retry and may_fence:
        return Step(start_fencing(h, cfg, now), fence=True)
    return Step(h)
