"""Capacity report (N+1): could each host's VMs be re-placed on the others if it failed?

For every host that holds VMs the evacuation planner packs them onto the remaining
active hosts (all filters, group rules and allocation ratios apply), inside a trial so
the fleet state is left as it was. The fleet passes when every host passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fleet.core.evacuation import ENGINE, STRATEGIES, plan_evacuation
from fleet.core.fleetstate import FleetState


@dataclass(frozen=True)
class HostVerdict:
    """Whether ``host``'s VMs fit elsewhere; ``stranded`` names those that do not."""

    host: str
    state: str
    vms: int
    stranded: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.stranded

    def to_dict(self) -> dict[str, object]:
        return {"host": self.host, "state": self.state, "vms": self.vms, "ok": self.ok,
                "stranded": list(self.stranded)}


@dataclass(frozen=True)
class CapacityReport:
    """Per-host verdicts and the fleet's: N+1 holds when every host passes."""

    hosts: tuple[HostVerdict, ...]

    @property
    def ok(self) -> bool:
        return all(h.ok for h in self.hosts)

    @property
    def failing(self) -> tuple[str, ...]:
        return tuple(h.host for h in self.hosts if not h.ok)

    def to_dict(self) -> dict[str, object]:
        return {"n_plus_1": self.ok, "failing": list(self.failing),
                "hosts": [h.to_dict() for h in self.hosts]}


def n_plus_one(st: FleetState, thorough: bool = False) -> CapacityReport:
    """Check every host; ``thorough`` also tries the fallback packings when one fails."""
    strategies: Sequence[str] = STRATEGIES if thorough else (ENGINE,)
    verdicts = []
    for i, host in enumerate(st.hosts):
        vms = st.vms_on(i)
        stranded: tuple[str, ...] = ()
        if vms:
            plan = plan_evacuation(st, [host.name], strategies=strategies, explain=False)
            stranded = tuple(u.vm for u in plan.unplaced)
        verdicts.append(HostVerdict(host.name, host.state, len(vms), stranded))
    return CapacityReport(tuple(verdicts))
