"""Sighting a moved VM: look at its source and destination until the picture settles.

The end of a migration is not atomic across two hosts (see ``fleet.core.whereabouts``).
The runner, after its hypervisor call returned, and the reconciler, after the orphaned
job ended, both look here: they keep looking while the picture is unsettled, renewing
the move's lease, for at most ``settle_s``, and then decide on what they saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from fleet.core.hypervisor import DomainGone, DomainInfo, DomainState, Hypervisor
from fleet.core.whereabouts import Where, judge


def find(hv: Hypervisor, name: str) -> DomainInfo | None:
    """The domain ``name`` on ``hv``, or None if that host does not hold it."""
    try:
        return hv.lookup(name)
    except DomainGone:
        return None


def _state(info: DomainInfo | None) -> DomainState | None:
    return None if info is None else info.state


@dataclass(frozen=True)
class Sighting:
    """What the two hosts reported last, and the verdict on it."""

    where: Where
    here: DomainInfo | None
    there: DomainInfo | None
    looks: int = 1

    def describe(self) -> str:
        here = self.here.state if self.here else "absent"
        there = self.there.state if self.there else "absent"
        return f"source: {here}, destination: {there}"


@dataclass
class Lookout:
    """How long and how often to look; ``keep`` renews the move's lease between looks."""

    settle_s: float
    poll_s: float
    keep: Callable[[], object] = lambda: None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def sight(self, source: Hypervisor, dest: Hypervisor | None, name: str,
              stopped: bool) -> Sighting:
        """Look until the verdict is not unsettled or ``settle_s`` has passed."""
        deadline = self.clock() + self.settle_s
        looks = 0
        while True:
            here = find(source, name)
            there = find(dest, name) if dest is not None else None
            looks += 1
            seen = Sighting(judge(_state(here), _state(there), stopped), here, there, looks)
            if seen.where is not Where.UNSETTLED or self.clock() >= deadline:
                return seen
            self.keep()
            self.sleep(self.poll_s)
