"""Settling a move on the hosts: look at both, let ``fleet.core.settlement`` decide, act.

The runner (after its hypervisor call returned or raised) and the reconciler (after an
orphaned job ended) both settle here. Each look asks both hypervisors for the VM — a
host that cannot be asked is *unknown*, never *absent* — and the pure ``settle`` says
what it means. Its safety steps are taken at once: a second running copy is paused
(then, once the other copy is confirmed running, destroyed), a leftover is removed, the
one copy that must run is resumed. Every step is an event. Looking goes on, renewing
the move's lease, while the picture is unsettled — for at most ``settle_s``, or
``unreachable_s`` while a host cannot be asked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from fleet.core.hypervisor import DomainGone, DomainInfo, Hypervisor, HypervisorError
from fleet.core.settlement import Copy, Seen, Settlement, Sighting, settle
from fleet.store import Store

log = logging.getLogger(__name__)
Step = Callable[[str, str, str], None]
"""Reports a safety step taken: (step, host, reason)."""


def find(hv: Hypervisor, name: str) -> DomainInfo | None:
    """The domain ``name`` on ``hv``, or None if that host does not hold it."""
    try:
        return hv.lookup(name)
    except DomainGone:
        return None


def reported_running(store: Store, host: str, name: str) -> bool:
    """Whether ``host``'s live heartbeat reports ``name`` running."""
    beat = store.heartbeat(host)
    domains = beat.get("domains", []) if beat else []
    return any(d.get("name") == name and d.get("state") == "running" for d in domains)


def copy_on(hv: Hypervisor | None, name: str) -> tuple[Copy, DomainInfo | None]:
    """The state of ``name``'s copy on ``hv`` (no hypervisor: absent; no answer: unknown)."""
    if hv is None:
        return Seen.ABSENT, None
    try:
        info = find(hv, name)
    except HypervisorError:
        return Seen.UNKNOWN, None
    return (Seen.ABSENT, None) if info is None else (info.state, info)


@dataclass(frozen=True)
class Picture:
    """The last sighting, the settlement on it and how many looks it took."""

    settlement: Settlement
    sighting: Sighting
    looks: int = 1

    def describe(self) -> str:
        return (f"source: {self.sighting.source.value},"
                f" destination: {self.sighting.destination.value}")


@dataclass
class Settler:
    """How long and how often to look; ``keep`` renews the move's lease between looks."""

    settle_s: float
    poll_s: float
    unreachable_s: float = 120.0
    keep: Callable[[], object] = lambda: None
    step: Step = lambda step, host, why: None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def settle(self, source: Hypervisor, dest: Hypervisor | None, name: str,
               stopped: bool) -> Picture:
        """Look, decide and act until the settlement is decided or time is up."""
        started, looks, paused = self.clock(), 0, False
        hosts = {source.host: source, **({dest.host: dest} if dest is not None else {})}
        while True:
            here, info = copy_on(source, name)
            there, _ = copy_on(dest, name)
            patience = self.unreachable_s if Seen.UNKNOWN in (here, there) else self.settle_s
            seen = Sighting(here, there, stopped, cancelled=bool(info and info.cancelled),
                            paused_here=paused, final=self.clock() - started >= patience)
            looks += 1
            verdict = settle(source.host, dest.host if dest else "", seen)
            if verdict.pause:
                first = not paused
                paused = self._act("pause", hosts[verdict.pause], name, verdict) or paused
                if first and paused:
                    continue  # confirm the other copy at once
            if verdict.decided or seen.final:
                self._finish(hosts, name, verdict)
                return Picture(verdict, seen, looks)
            self.keep()
            self.sleep(self.poll_s)

    def _finish(self, hosts: dict[str, Hypervisor], name: str, verdict: Settlement) -> None:
        if verdict.remove:
            self._act("remove", hosts[verdict.remove], name, verdict)
        if verdict.resume:
            self._act("resume", hosts[verdict.resume], name, verdict)

    def _act(self, step: str, hv: Hypervisor, name: str, verdict: Settlement) -> bool:
        """Take one safety step on ``hv``; False if the hypervisor refused."""
        action = {"pause": hv.pause, "remove": hv.destroy, "resume": hv.resume}[step]
        try:
            action(name)
        except HypervisorError as exc:
            log.warning("could not %s %s on %s: %s", step, name, hv.host, exc)
            self.step(f"{step}_failed", hv.host, f"{verdict.reason}: {exc}")
            return False
        self.step(step, hv.host, verdict.reason)
        return True
