"""Faults injected into a running lab, and an independent witness of running copies.

- ``kill_*``: SIGKILL a lab process by the pid the lab recorded (a host's libvirtd or
  agent, the lab's Redis, controller or monitor), never by name; ``restart_*`` bring one
  part back as ``fleet lab up`` does, ``restore`` brings back everything that is missing.
- ``strike``: act at a chosen moment of a live migration — early, mid-way, right after
  the destination resumed the guest (the source still holds its copy), or just after
  the source's copy is gone.
- ``CopyWatch``: samples every host's libvirt in a thread and counts how long each guest
  ran in more than one copy. While a host's libvirtd is down its guests keep running in
  their QEMU processes: a copy last seen running there counts as long as its QEMU lives.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import pairwise
from pathlib import Path
from types import TracebackType

from fleet.core.errors import InvalidInput
from fleet.core.hypervisor import DomainGone, HypervisorError
from fleet.core.policy import progress_percent
from fleet.lab import lab
from fleet.lab.config import LabConfig
from fleet.lab.procs import LabError, alive, kill, wait_until
from fleet.lab.services import ensure_redis, start_agents, start_controller
from fleet.lab.state import LabState, load_state, locked, save_state
from workers.hypervisors.libvirt import LibvirtHypervisor
from workers.procfs import netns_processes

SERVICES = ("redis", "controller", "monitor", "flower")
RUNNING = "running"
GONE = ("shutoff", "absent")


# -- killing and bringing back -----------------------------------------------------------
def lab_state(cfg: LabConfig) -> LabState:
    state = load_state(cfg.path)
    if state is None:
        raise LabError(f"no lab is up in {cfg.root}")
    return state


def _sigkill(pid: int, what: str) -> int:
    if not alive(pid):
        raise LabError(f"{what} is not running (pid {pid})")
    kill([pid])
    wait_until(lambda: not alive(pid), 10.0, f"{what} to die", interval_s=0.01)
    return pid


def kill_libvirtd(cfg: LabConfig, host: str) -> int:
    """SIGKILL ``host``'s libvirtd (its guests' QEMU processes keep running); its pid."""
    return _sigkill(lab_state(cfg).host(cfg.check_host(host)).libvirtd, f"{host}'s libvirtd")


def kill_agent(cfg: LabConfig, host: str) -> int:
    """SIGKILL ``host``'s fleet agent; its pid."""
    return _sigkill(lab_state(cfg).host(cfg.check_host(host)).agent, f"{host}'s agent")


def kill_service(cfg: LabConfig, service: str) -> int:
    """SIGKILL the lab's ``redis``, ``controller``, ``monitor`` or ``flower``; its pid."""
    if service not in SERVICES:
        raise InvalidInput(f"unknown lab service {service!r}: one of {', '.join(SERVICES)}")
    return _sigkill(int(getattr(lab_state(cfg), service)), f"the lab's {service}")


def restart_redis(cfg: LabConfig) -> int:
    """Start the lab's Redis again if it is not running (its data reloads); its pid."""
    with locked(cfg.path):
        state = lab_state(cfg)
        state.redis = ensure_redis(cfg, state.redis)
        save_state(state)
        return state.redis


def restart_control(cfg: LabConfig) -> None:
    """Start the controller, monitor and Flower again, those not running."""
    with locked(cfg.path):
        state = lab_state(cfg)
        start_controller(cfg, state)
        save_state(state)


def restart_agent(cfg: LabConfig, host: str) -> int:
    """Start ``host``'s agent again if it is not running; its pid."""
    with locked(cfg.path):
        state = lab_state(cfg)
        start_agents(cfg, state, [cfg.check_host(host)])
        save_state(state)
        return state.host(host).agent


def restore(cfg: LabConfig) -> LabState:
    """Bring back whatever is missing (``fleet lab up``): daemons, hosts, services."""
    return lab.up(cfg, agents=True, install=False)


def dead_processes(cfg: LabConfig) -> list[str]:
    """The lab's fleet processes and daemons that are not running, by name."""
    state = lab_state(cfg)
    dead = [s for s in ("redis", "controller", "monitor") if not alive(getattr(state, s))]
    for host in cfg.host_names():
        pids = state.host(host)
        dead += [f"{host} {p}" for p in ("libvirtd", "agent") if not alive(getattr(pids, p))]
    return dead


# -- where copies are --------------------------------------------------------------------
def qemu_guests(cfg: LabConfig, host: str) -> dict[str, list[int]]:
    """Guest name -> QEMU pids running inside ``host``'s namespace (one scan of /proc)."""
    found: dict[str, list[int]] = {}
    for pid in netns_processes(cfg.netns(host)):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not any(a.rsplit(b"/", 1)[-1].startswith(b"qemu-system") for a in argv):
            continue
        for arg in argv:
            if arg.startswith(b"guest="):
                found.setdefault(arg[6:].split(b",")[0].decode(), []).append(pid)
    return found


def copy_state(hv: LibvirtHypervisor, name: str) -> str:
    """``name``'s copy on ``hv``: a ``DomainState`` value, "absent" or "unknown"."""
    try:
        return hv.lookup(name).state.value
    except DomainGone:
        return "absent"
    except HypervisorError:
        return "unknown"


def hypervisors(cfg: LabConfig, hosts: Iterable[str] | None = None,
                ) -> dict[str, LibvirtHypervisor]:
    """A fresh libvirt connection (opened on first use) per lab host."""
    return {h: cfg.hypervisor(h)
            for h in (hosts or cfg.host_names())}


def running_copies(cfg: LabConfig, names: Iterable[str],
                   ) -> tuple[dict[str, list[str]], list[str]]:
    """Each guest of ``names`` -> the hosts where libvirt says it runs, and the hosts
    whose libvirt did not answer."""
    where: dict[str, list[str]] = {name: [] for name in names}
    silent = []
    for host, hv in hypervisors(cfg).items():
        try:
            for dom in hv.list_domains():
                if dom.name in where and dom.state.value == RUNNING:
                    where[dom.name].append(host)
        except HypervisorError:
            silent.append(host)
        finally:
            hv.close()
    return where, silent


@dataclass(frozen=True)
class Sample:
    """Where each watched guest ran at one instant (monotonic time)."""

    at: float
    running: dict[str, frozenset[str]]


@dataclass
class CopyWatch:
    """Samples every host's libvirt every ``interval_s`` for the guests ``names``."""

    cfg: LabConfig
    names: list[str]
    interval_s: float = 0.1
    samples: list[Sample] = field(default_factory=list)
    _known: dict[tuple[str, str], str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> CopyWatch:
        self._thread = threading.Thread(target=self._loop, name="copy-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30.0)

    def saw(self, host: str, name: str, state: str) -> None:
        """Take another poller's observation of ``name`` on ``host`` into account."""
        if state != "unknown":
            self._known[(host, name)] = state

    def _loop(self) -> None:
        hvs = hypervisors(self.cfg)
        try:
            while not self._stop.is_set():
                self.samples.append(self._sample(hvs))
                self._stop.wait(self.interval_s)
        finally:
            for hv in hvs.values():
                hv.close()

    def _sample(self, hvs: dict[str, LibvirtHypervisor]) -> Sample:
        """Hosts are read one after another, so a switch-over between two reads would
        look like two copies: a guest seen on several hosts counts there only if the
        hosts read before the last one still run it when read again (it then ran on all
        of them at that last read)."""
        running: dict[str, set[str]] = {name: set() for name in self.names}
        order = list(hvs)
        for host in order:
            for name in self._running_on(host, hvs[host]):
                running[name].add(host)
        for name, hosts in running.items():
            if len(hosts) >= 2:
                last = max(hosts, key=order.index)
                running[name] = {last} | {h for h in hosts - {last}
                                          if name in self._running_on(h, hvs[h])}
        return Sample(time.monotonic(), {n: frozenset(h) for n, h in running.items()})

    def _running_on(self, host: str, hv: LibvirtHypervisor) -> set[str]:
        try:
            states = {d.name: d.state.value for d in hv.list_domains()}
        except HypervisorError:  # libvirtd down: copies last seen running, if QEMU lives
            qemus = qemu_guests(self.cfg, host)
            return {n for n in self.names
                    if self._known.get((host, n)) == RUNNING and n in qemus}
        for name in self.names:
            self._known[(host, name)] = states.get(name, "absent")
        said = {n for n in self.names if states.get(n) == RUNNING}
        # a libvirtd that just started reports its dead guests running until it has
        # failed to reconnect to their QEMU: a copy runs only where its QEMU does
        return said & set(qemu_guests(self.cfg, host)) if said else said

    def two_copies_s(self, name: str, since: float = 0.0) -> float:
        """Seconds ``name`` ran on two or more hosts (each sample counts until the next)."""
        total, samples = 0.0, [s for s in self.samples if s.at >= since]
        for one, following in pairwise(samples):
            if len(one.running.get(name, ())) >= 2:
                total += following.at - one.at
        return total

    def overlaps(self, name: str) -> list[tuple[float, float, frozenset[str]]]:
        """The spans in which ``name`` ran on two or more hosts: (from, to, hosts)."""
        spans: list[tuple[float, float, frozenset[str]]] = []
        for one, following in pairwise(self.samples):
            hosts = one.running.get(name, frozenset())
            if len(hosts) < 2:
                continue
            if spans and spans[-1][1] == one.at and spans[-1][2] == hosts:
                spans[-1] = (spans[-1][0], following.at, hosts)
            else:
                spans.append((one.at, following.at, hosts))
        return spans

    def ran_on(self, name: str, host: str, since: float = 0.0) -> bool:
        """Whether ``name`` was sampled running on ``host`` at or after ``since``."""
        return any(host in s.running.get(name, ()) for s in self.samples if s.at >= since)


# -- acting at a moment of a migration ---------------------------------------------------
class Moment(StrEnum):
    """Moments of a live migration at which ``strike`` acts."""

    EARLY = "early"  # memory started flowing to the destination
    MID = "mid"  # about half of the memory copied
    RESUMED = "resumed"  # the destination runs the guest; the source still holds its copy
    SOURCE_GONE = "source_gone"  # the source's copy shut off or undefined


@dataclass(frozen=True)
class Strike:
    """What both hosts said of the guest when ``strike`` acted, and when it did."""

    moment: Moment
    source: str
    destination: str
    at: float


def strike(cfg: LabConfig, name: str, source: str, destination: str, moment: Moment,
           act: Callable[[], object], watch: CopyWatch | None = None,
           timeout_s: float = 180.0) -> Strike:
    """Wait until the migration of ``name`` from ``source`` to ``destination`` reaches
    ``moment``, then call ``act`` at once. The last states seen go to ``watch``."""
    hvs = hypervisors(cfg, [source, destination])
    seen = {source: "unknown", destination: "unknown"}

    def look(host: str) -> str:
        seen[host] = copy_state(hvs[host], name)
        if watch is not None:
            watch.saw(host, name, seen[host])
        return seen[host]

    try:
        _await(moment, hvs[source], name, look, source, destination, timeout_s)
        act()
        return Strike(moment, seen[source], seen[destination], time.monotonic())
    finally:
        for hv in hvs.values():
            hv.close()


def _await(moment: Moment, src: LibvirtHypervisor, name: str, look: Callable[[str], str],
           source: str, destination: str, timeout_s: float) -> None:
    what = f"the migration of {name} to reach {moment.value}"
    if moment in (Moment.EARLY, Moment.MID):
        least = 50.0 if moment is Moment.MID else 0.1
        wait_until(lambda: _copied(src, name) >= least, timeout_s, what, interval_s=0.02)
        look(source)
        look(destination)
        return
    # the switch-over lasts tens of milliseconds: poll lightly until it begins, then hard
    wait_until(lambda: look(source) != RUNNING or look(destination) == RUNNING, timeout_s,
               what, interval_s=0.01)
    if moment is Moment.RESUMED:
        wait_until(lambda: look(destination) == RUNNING or look(source) in GONE, 10.0, what,
                   interval_s=0.0)
    else:
        wait_until(lambda: (look(destination), look(source))[1] in GONE, 10.0, what,
                   interval_s=0.0)


def _copied(src: LibvirtHypervisor, name: str) -> float:
    """Percent of ``name``'s memory copied so far (0 while no migration job runs)."""
    try:
        stats = src.job_stats(name)
    except HypervisorError:
        return 0.0
    if stats is None:
        return 0.0
    return progress_percent(stats.processed_mib, stats.remaining_mib, stats.total_mib)
