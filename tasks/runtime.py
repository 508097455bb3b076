"""Per-process runtime: settings, store and hypervisors, opened in the process using them.

A process calls ``configure`` before its worker starts (threads pool: one process),
so libvirt connections are opened after any fork, where they are used.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass, field

from fleet.core.hypervisor import Hypervisor
from fleet.core.models import Host
from fleet.settings import Settings, load_settings
from fleet.store import Store
from workers.drain import DrainPlanner, placement_config
from workers.hypervisors.factory import open_hypervisor


@dataclass
class Runtime:
    """What tasks in this process share."""

    settings: Settings
    store: Store
    driver: str = "sim"
    uri: str = ""
    hosts: list[str] = field(default_factory=list)
    instance: str = field(default_factory=lambda: f"{os.getpid()}-{uuid.uuid4().hex[:6]}")
    _open: dict[str, Hypervisor] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _planner: DrainPlanner | None = None

    def drain_planner(self) -> DrainPlanner:
        """This process's drain planner (its kept placement state), made on first use."""
        with self._lock:
            if self._planner is None:
                self._planner = DrainPlanner(self.store, placement_config(self.settings))
            return self._planner

    def runner_id(self, host: str) -> str:
        return f"{host}/{self.instance}"

    def hypervisor(self, host: str) -> Hypervisor:
        """This agent's own hypervisor for ``host``."""
        if host not in self.hosts:
            raise LookupError(f"this agent does not serve host {host}")
        return self._get(host, self.driver, self.uri)

    def locate(self, host: Host) -> Hypervisor:
        """Any host's hypervisor, for verification (libvirt: its migration URI)."""
        if host.name in self.hosts:
            return self.hypervisor(host.name)
        return self._get(host.name, host.driver, host.migration_uri)

    def _get(self, host: str, driver: str, uri: str) -> Hypervisor:
        with self._lock:
            if host not in self._open:
                self._open[host] = open_hypervisor(driver, host, uri, self.store, self.settings)
            return self._open[host]


_current: dict[str, Runtime] = {}


def _store(settings: Settings) -> Store:
    """A long-running process's store: it rides out a Redis restart or promotion."""
    return Store.connect(settings.redis_url, settings.prefix,
                         ride_out_s=settings.redis_ride_out_s)


def runtime() -> Runtime:
    """This process's runtime, created from the environment on first use."""
    if "rt" not in _current:
        settings = load_settings()
        _current["rt"] = Runtime(settings, _store(settings))
    return _current["rt"]


def configure(settings: Settings, hosts: list[str] | None = None, driver: str = "sim",
              uri: str = "") -> Runtime:
    """Set this process's runtime: an agent serving ``hosts``, or (no hosts) a controller
    or monitor."""
    store = _store(settings)
    _current["rt"] = Runtime(settings, store, driver=driver, uri=uri, hosts=list(hosts or []))
    return _current["rt"]
