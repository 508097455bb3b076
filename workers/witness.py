"""The witness: the monitor's own probe of a silent host's hypervisor.

A host's heartbeat comes from its agent, so a dead agent looks like a dead host. Before
a silent host is fenced, each monitor opens a TCP connection to the hypervisor port
named by the host's migration URI (libvirtd: 16509 for ``+tcp``, 16514 for TLS, 22 for
``+ssh``). An answer proves the host's kernel and libvirtd are up — only the agent
died — and ``decide`` then holds the fence back. The probe runs in short-lived threads
off the monitor's loop, at most one per host at a time, bounded by ``timeout_s``; only
hosts whose heartbeat is late are probed. No answer proves nothing, so it changes
nothing: the heartbeat rules apply as before.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from fleet.core.models import Host

PORTS = {"tcp": 16509, "tls": 16514, "ssh": 22, "libssh": 22, "libssh2": 22}


def witness_target(host: Host) -> tuple[str, int] | None:
    """``(address, port)`` of ``host``'s hypervisor endpoint, or None if it has none."""
    if not host.migration_uri:
        return None
    try:
        parts = urlsplit(host.migration_uri)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    transport = parts.scheme.partition("+")[2] or "tls"
    if port is None:
        port = PORTS.get(transport)
    return None if port is None else (parts.hostname, port)


def answers(target: tuple[str, int], timeout_s: float) -> bool:
    """A TCP connection to ``target`` opens within ``timeout_s``."""
    try:
        with socket.create_connection(target, timeout=timeout_s):
            return True
    except OSError:
        return False


class Witness:
    """Probes hosts in the background; ``answered`` maps host → time of its last answer."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.time,
                 probe: Callable[[tuple[str, int], float], bool] = answers) -> None:
        self.timeout_s = timeout_s
        self.clock = clock
        self.probe = probe
        self._answered: dict[str, float] = {}
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def check(self, hosts: Iterable[Host]) -> None:
        """Start a probe of each of ``hosts`` that has a target and none in flight."""
        for host in hosts:
            target = witness_target(host)
            with self._lock:
                if target is None or host.name in self._busy:
                    continue
                self._busy.add(host.name)
            threading.Thread(target=self._run, args=(host.name, target), daemon=True,
                             name=f"witness-{host.name}").start()

    def probing(self) -> bool:
        """Some probe is still in flight."""
        with self._lock:
            return bool(self._busy)

    def answered(self) -> dict[str, float]:
        with self._lock:
            return dict(self._answered)

    def _run(self, name: str, target: tuple[str, int]) -> None:
        try:
            if self.probe(target, self.timeout_s):
                with self._lock:
                    self._answered[name] = self.clock()
        finally:
            with self._lock:
                self._busy.discard(name)
