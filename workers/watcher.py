"""The agent's watch over its host: registration, facts and discovery, on time and on events.

One ``HostWatcher`` thread per served host. Each round (every ``inventory_interval_s``,
or at once when libvirt reports a domain lifecycle event) it re-registers the host if
its record is missing (Redis lost its data), refreshes the host's facts every
``node_facts_interval_s``, and runs discovery (``workers.discovery``): the domains named
by events first (and, every half second, domains last seen in a migration, so a guest an
operator migrated here is followed as soon as it lands), a full scan otherwise.
Simulated hosts change only through fleet, so they are registered but not scanned.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fleet.core.hypervisor import Hypervisor, HypervisorError
from fleet.settings import Settings
from fleet.store import Store
from workers.discovery import Discovery
from workers.heartbeat import Ticker
from workers.hostfacts import Registration, publish_host
from workers.inventory import Locate

log = logging.getLogger(__name__)
FLUX_RELOOK_S = 0.5  # a domain seen in a migration is looked at again this soon

NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs", "fuse.glusterfs", "gfs2", "ocfs2",
    "fuse.sshfs", "beegfs", "lustre", "gpfs"})


def shared_mounts(mounts: Path = Path("/proc/self/mounts")) -> tuple[str, ...]:
    """Mount points of network or cluster filesystems (storage other hosts may see)."""
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return ()
    points = [parts[1] for parts in (line.split() for line in lines)
              if len(parts) > 2 and parts[2] in NETWORK_FILESYSTEMS]
    return tuple(p.rstrip("/") + "/" for p in points if os.path.isabs(p))


@dataclass
class HostWatcher:
    """Registration, facts and discovery of one host, in a daemon thread."""

    store: Store
    hv: Hypervisor
    settings: Settings
    registration: Registration
    locate: Locate
    scan_domains: bool = True
    _named: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _facts_at: float = -1e9
    _scanned_at: float = -1e9

    def __post_init__(self) -> None:
        s = self.settings
        self.discovery = Discovery(
            self.store, self.hv, self.locate, shared=(*s.shared_storage, *shared_mounts()),
            gone_after_s=s.inventory_gone_after_s, fresh_s=s.heartbeat_ttl_s)
        self.ticker = Ticker(f"watch-{self.hv.host}", s.inventory_interval_s, self.round,
                             pause=self._pause)

    def wake(self, name: str) -> None:
        """A lifecycle event named ``name`` (libvirt's event thread: must not block)."""
        with self._lock:
            self._named.add(name)
        self.ticker.poke()

    def start(self) -> threading.Thread:
        if self.scan_domains:
            try:
                self.hv.watch(self.wake)
            except HypervisorError as exc:  # the periodic scan still runs
                log.warning("no lifecycle events from %s: %s", self.hv.host, exc)
        return self.ticker.start()

    def _pause(self) -> float:
        """Half a second while a domain is in a migration here, else the interval."""
        interval = self.settings.inventory_interval_s
        return min(FLUX_RELOOK_S, interval) if self.discovery.in_flux else interval

    def round(self) -> None:
        """Register or refresh the host if due, then look at named domains or all."""
        now = time.monotonic()
        due = now - self._facts_at >= self.settings.node_facts_interval_s
        if due or self.store.find_host(self.hv.host) is None:
            publish_host(self.store, self.hv, self.registration)
            self._facts_at = now
        if not self.scan_domains:
            return
        with self._lock:
            named, self._named = self._named | self.discovery.in_flux, set()
        for name in sorted(named):
            self.discovery.observe_name(name)
        if not named or now - self._scanned_at >= self.settings.inventory_interval_s:
            self.discovery.scan()
            self._scanned_at = now
