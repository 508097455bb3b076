"""Heartbeats and inventory: every agent says it is alive and what its hypervisor runs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from fleet.core.hypervisor import Hypervisor, HypervisorError, PoweredOff
from fleet.store import Store

log = logging.getLogger(__name__)


def beat_once(store: Store, hv: Hypervisor, agent_id: str, ttl_s: float) -> None:
    """One heartbeat with libvirt health and the domains this host runs."""
    try:
        healthy = hv.healthy()
    except PoweredOff:
        return  # a host without power sends nothing
    except HypervisorError as exc:
        healthy, error = False, str(exc)
    else:
        error = ""
    try:
        domains = [{"name": d.name, "state": d.state.value} for d in hv.list_domains()]
    except HypervisorError as exc:
        domains, error = [], error or str(exc)
    store.beat(hv.host, {"agent": agent_id, "hypervisor_ok": healthy, "domains": domains,
                         "error": error}, ttl_s)


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
