"""The vocabulary of failover decisions: observed events, actions, and the kept state.

``fleet.core.failover.decide`` consumes an ``Observation`` (with ``Event``s) and a
``FailoverState`` and returns a ``Decision`` (new state, ``Action``s, transitions).
Everything is a frozen dataclass; ``FailoverState`` has a JSON-able form for the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fleet.core.health import Health, HostHealth
from fleet.core.models import VM, Host
from fleet.core.recovery import Pending

# -- inputs -------------------------------------------------------------------------


@dataclass(frozen=True)
class FenceResult:
    """A fence agent's answer: ``ok`` only when power-off was confirmed."""

    host: str
    ok: bool
    detail: str = ""
    needs_operator: bool = False


@dataclass(frozen=True)
class RecoverResult:
    """How a ``Recover`` ended: started on ``target`` or failed there."""

    vm: str
    target: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class OperatorConfirm:
    """``fleet host confirm-down H``: the operator checked that the host is off."""

    host: str


@dataclass(frozen=True)
class OperatorFence:
    """``fleet host fence H``: fence now, whatever the heartbeats say."""

    host: str


@dataclass(frozen=True)
class OperatorActivate:
    """``fleet host activate H`` after repair: the host may run VMs again."""

    host: str


Event = FenceResult | RecoverResult | OperatorConfirm | OperatorFence | OperatorActivate


@dataclass(frozen=True)
class Observation:
    """The world as the monitor sees it at one moment.

    ``last_beat`` holds each host's newest heartbeat time on the monitor's clock; a host
    missing from it counts from the moment the monitor first saw it. ``claims`` are
    capacity held by other jobs (in-flight migrations) per host. ``takeover`` is set
    on a new leader's first round: fences the old leader may have left unfinished are
    sent again (fencing is idempotent) and its unsettled restarts are re-planned (the
    compare-and-set on the VM record stops the loser of any race). ``witness`` holds the
    time each host's hypervisor last answered the monitor's own probe (hosts with no
    witness are absent).
    """

    hosts: list[Host]
    last_beat: Mapping[str, float]
    vms: list[VM]
    events: tuple[Event, ...] = ()
    claims: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    takeover: bool = False
    witness: Mapping[str, float] = field(default_factory=dict)


# -- outputs ------------------------------------------------------------------------


@dataclass(frozen=True)
class Fence:
    """Fence ``host``: power off and confirm off within ``timeout_s``; report a result."""

    host: str
    attempt: int
    timeout_s: float


@dataclass(frozen=True)
class Recover:
    """Restart ``vm`` from its stored definition on ``target`` (see the CAS rule)."""

    vm: str
    source: str
    target: str
    priority: int


@dataclass(frozen=True)
class MarkDown:
    """Record ``vm`` as down: its host is off and it is not (yet) restarted."""

    vm: str
    host: str
    reason: str


@dataclass(frozen=True)
class Alert:
    """Something an operator should hear about; ``kind`` is a stable keyword."""

    kind: str
    subject: str
    message: str


Action = Fence | Recover | MarkDown | Alert


@dataclass(frozen=True)
class Transition:
    """A host changed health state."""

    host: str
    old: Health
    new: Health
    detail: str


@dataclass(frozen=True)
class FailoverState:
    """What the monitor keeps between calls (persisted by the caller)."""

    hosts: Mapping[str, HostHealth] = field(default_factory=dict)
    pending: Mapping[str, Pending] = field(default_factory=dict)
    excluded: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    unplaced: frozenset[str] = frozenset()
    held: frozenset[str] = frozenset()

    @property
    def storm(self) -> bool:
        """Whether hosts are held by a storm."""
        return bool(self.held)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form for the store."""
        return {
            "hosts": {h: hh.to_dict() for h, hh in self.hosts.items()},
            "pending": {v: [p.source, p.target, p.issued_at] for v, p in self.pending.items()},
            "excluded": {v: dict(e) for v, e in self.excluded.items()},
            "unplaced": sorted(self.unplaced),
            "held": sorted(self.held),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FailoverState:
        pending = {v: Pending(v, str(s), str(t), float(at))
                   for v, (s, t, at) in data.get("pending", {}).items()}
        return cls(
            hosts={h: HostHealth.from_dict(d) for h, d in data.get("hosts", {}).items()},
            pending=pending,
            excluded={v: {h: float(u) for h, u in e.items()}
                      for v, e in data.get("excluded", {}).items()},
            unplaced=frozenset(data.get("unplaced", ())),
            held=frozenset(data.get("held", ())),
        )


@dataclass(frozen=True)
class Decision:
    """The new state, what to do, and what changed."""

    state: FailoverState
    actions: tuple[Action, ...]
    transitions: tuple[Transition, ...]
    unplaced: tuple[str, ...] = ()

    def of(self, kind: type[Any]) -> list[Any]:
        """The actions of one type, in order."""
        return [a for a in self.actions if isinstance(a, kind)]
