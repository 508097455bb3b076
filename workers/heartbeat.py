"""Heartbeats and inventory: every agent says it is alive and what its hypervisor runs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from fleet.core.hypervisor import Hypervisor, HypervisorError, PoweredOff
from fleet.store import Store

log = logging.getLogger(__name__)


def reading(hv: Hypervisor, agent_id: str) -> dict[str, object] | None:
    """What one heartbeat of ``hv``'s host says: libvirt health and the domains it runs;
    None for a host without power (it sends nothing)."""
    try:
        healthy = hv.healthy()
    except PoweredOff:
        return None
    except HypervisorError as exc:
        healthy, error = False, str(exc)
    else:
        error = ""
    try:
        domains = [{"name": d.name, "state": d.state.value} for d in hv.list_domains()]
    except HypervisorError as exc:
        domains, error = [], error or str(exc)
    return beat_info(agent_id, healthy, domains, error)


def beat_info(agent_id: str, healthy: bool, domains: Sequence[Mapping[str, str]],
              error: str = "") -> dict[str, object]:
    """A heartbeat's content: the agent, libvirt health, the domains, the last error."""
    return {"agent": agent_id, "hypervisor_ok": healthy, "domains": list(domains),
            "error": error}


def beat_once(store: Store, hv: Hypervisor, agent_id: str, ttl_s: float) -> None:
    """One heartbeat with libvirt health and the domains this host runs."""
    info = reading(hv, agent_id)
    if info is not None:
        store.beat(hv.host, info, ttl_s)


def beat_surveyed(store: Store, seen: Mapping[str, Sequence[Mapping[str, str]] | None],
                  agent_id: Callable[[str], str], ttl_s: float) -> int:
    """One heartbeat for each host of ``seen`` (its domains, read together for many
    hosts; None for a host without power), written in one round trip; how many."""
    infos = {host: beat_info(agent_id(host), True, domains)
             for host, domains in seen.items() if domains is not None}
    store.beat_many(infos, ttl_s)
    return len(infos)


def beat_hosts(store: Store, hvs: Sequence[Hypervisor], agent_id: Callable[[str], str],
               ttl_s: float) -> int:
    """One heartbeat for each host of ``hvs``, written in one round trip; how many."""
    infos = {}
    for hv in hvs:
        try:
            info = reading(hv, agent_id(hv.host))
        except Exception:  # one host's failure must not silence the others
            log.exception("heartbeat of %s failed", hv.host)
            continue
        if info is not None:
            infos[hv.host] = info
    store.beat_many(infos, ttl_s)
    return len(infos)


@dataclass
class Ticker:
    """Runs ``action`` every ``interval_s`` in a daemon thread until stopped; ``poke``
    runs it at once, and ``pause`` (if given) says how long to wait after each round."""

    name: str
    interval_s: float
    action: Callable[[], object]
    pause: Callable[[], float] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _poked: threading.Event = field(default_factory=threading.Event)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        thread.start()
        return thread

    def poke(self) -> None:
        """Run the next round now (safe from any thread; never blocks)."""
        self._poked.set()

    def stop(self) -> None:
        self._stop.set()
        self._poked.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.action()
            except Exception:  # a ticker must outlive one bad round
                log.exception("%s failed", self.name)
            self._poked.wait(self.interval_s if self.pause is None else self.pause())
            self._poked.clear()
