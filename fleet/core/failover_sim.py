"""A deterministic simulated fleet for failover: hosts, a shared store, monitors, a clock.

The scenario suite and the failover benchmark drive ``decide`` through this world. It
is pure Python with an explicit clock: ``tick`` advances time by ``dt``, lets powered
and connected hosts heartbeat, completes scheduled fence and restart operations, lets
each live monitor claim the lease and the leader run one ``decide`` round, executes the
actions as the real executors must (restart = compare-and-set of the VM record, then
start) and checks the invariants:

1. a VM never runs on two powered hosts;
2. no restart is committed while its source host is not confirmed off, and none starts
   while the source still runs the VM;
3. no host runs more than its capacity;
4. no two running VMs of one anti-affinity group share a host;
5. a running VM's record names the host it runs on.

Faults: power loss, network isolation, stopped heartbeats (a dead agent, seen or not
by a witness probe), fence agents that fail, hang
or need an operator, monitors that crash mid-round, duplicate restart deliveries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from fleet.core.failover import (
    Action,
    Alert,
    Decision,
    Event,
    FailoverState,
    Fence,
    FenceResult,
    Lease,
    MarkDown,
    Observation,
    Recover,
    RecoverResult,
    claim_lease,
    decide,
    may_act,
)
from fleet.core.health import CONFIRMED_OFF, FailoverConfig, Health
from fleet.core.models import VM, Host, HostState, VMState


@dataclass
class SimHost:
    """A simulated KVM host and its out-of-band fence device."""

    name: str
    vcpus: int = 16
    memory_mib: int = 32768
    powered: bool = True
    network: bool = True
    beating: bool = True
    witness: bool = False  # its hypervisor answers the monitors' probe while it is up
    maintenance: bool = False
    fence_mode: str = "ok"  # ok | fail | hang | manual | lie (checker tests)
    fence_delay_s: float = 1.0
    running: set[str] = field(default_factory=set)


@dataclass
class SimMonitor:
    """A monitor process; ``crash`` makes it die in a leader round.

    It dies in the first round whose decision holds an action of type ``crash_on``
    (any round when empty): before persisting the state, after persisting but before
    acting, or after executing only the first ``keep_actions`` actions.
    """

    name: str
    alive: bool = True
    crash: str = ""  # "" | "before_persist" | "after_persist" | "mid_actions"
    keep_actions: int = 0
    crash_on: str = ""

    def crashes(self, decision: Decision) -> str:
        if not self.crash:
            return ""
        if self.crash_on and not any(type(a).__name__ == self.crash_on
                                     for a in decision.actions):
            return ""
        return self.crash


@dataclass
class Simulation:
    """The world; see the module doc."""

    hosts: dict[str, SimHost]
    vms: dict[str, VM]
    cfg: FailoverConfig = field(default_factory=FailoverConfig)
    monitors: list[SimMonitor] = field(default_factory=lambda: [SimMonitor("m1")])
    dt: float = 0.5
    start_delay_s: float = 1.0
    duplicate_recovers: bool = False
    now: float = 0.0
    last_beat: dict[str, float] = field(default_factory=dict)
    answered: dict[str, float] = field(default_factory=dict)  # last witness answers
    lease: Lease | None = None
    stored_state: dict[str, object] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    scheduled: list[tuple[float, int, Callable[[], None]]] = field(default_factory=list)
    actions: list[tuple[float, str, Action]] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    starts: list[tuple[float, str, str]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    _seq: int = 0

    @classmethod
    def build(cls, hosts: list[SimHost], vms: list[VM], **kwargs: Any) -> Simulation:
        """A world where every VM runs on its recorded host."""
        sim = cls({h.name: h for h in hosts}, {v.name: v for v in vms}, **kwargs)
        for vm in vms:
            if vm.state == VMState.RUNNING.value:
                sim.hosts[vm.host].running.add(vm.name)
        for h in hosts:
            sim.last_beat[h.name] = 0.0
        return sim

    # -- time -----------------------------------------------------------------------
    def tick(self) -> None:
        """Advance one step; see the module doc."""
        self.now = round(self.now + self.dt, 6)
        due = sorted(s for s in self.scheduled if s[0] <= self.now)
        self.scheduled = [s for s in self.scheduled if s[0] > self.now]
        for _, _, op in due:
            op()
        for h in self.hosts.values():
            if h.powered and h.network and h.beating:
                self.last_beat[h.name] = self.now
            if h.powered and h.network and h.witness:
                self.answered[h.name] = self.now
        for mon in self.monitors:
            if mon.alive:
                self._monitor_round(mon)
        self.check()

    def run(self, seconds: float) -> None:
        """Tick for ``seconds`` of simulated time."""
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.tick()

    def run_until(self, cond: Callable[[], bool], limit_s: float = 120.0) -> float:
        """Tick until ``cond()`` holds; return the time it took (fails past ``limit_s``)."""
        start = self.now
        while not cond():
            if self.now - start > limit_s:
                raise AssertionError(f"condition not reached within {limit_s}s")
            self.tick()
        return self.now - start

    def later(self, delay_s: float, op: Callable[[], None]) -> None:
        self._seq += 1
        self.scheduled.append((self.now + delay_s, self._seq, op))

    # -- faults and operators -------------------------------------------------------
    def power_off(self, host: str) -> None:
        self.hosts[host].powered = False
        self.hosts[host].running.clear()

    def power_on(self, host: str) -> None:
        self.hosts[host].powered = True

    def isolate(self, host: str, cut: bool = True) -> None:
        self.hosts[host].network = not cut

    def operator(self, event: Event) -> None:
        self.events.append(event)

    # -- views ----------------------------------------------------------------------
    def state(self) -> FailoverState:
        return FailoverState.from_dict(self.stored_state)

    def health(self, host: str) -> Health:
        hh = self.state().hosts.get(host)
        return Health.ACTIVE if hh is None else hh.state

    def where(self, vm: str) -> list[str]:
        """Powered hosts actually running ``vm``."""
        return sorted(h.name for h in self.hosts.values() if h.powered and vm in h.running)

    def kinds(self, kind: type[object]) -> list[object]:
        return [a for _, _, a in self.actions if isinstance(a, kind)]

    def alerts(self, kind: str) -> list[Alert]:
        return [a for _, _, a in self.actions if isinstance(a, Alert) and a.kind == kind]

    def recovered_from(self, host: str) -> Callable[[], bool]:
        """A condition: every HA VM that was not stopped runs once, none on ``host``."""
        return lambda: self.all_ha_running() and not any(
            host in self.where(v.name) for v in self.vms.values())

    def all_ha_running(self) -> bool:
        return all(len(self.where(v.name)) == 1 for v in self.vms.values()
                   if v.ha and v.state != VMState.STOPPED.value)

    # -- the monitor ----------------------------------------------------------------
    def _host_records(self) -> list[Host]:
        return [Host(h.name, h.vcpus, h.memory_mib,
                     state=(HostState.MAINTENANCE if h.maintenance else HostState.ACTIVE).value)
                for h in self.hosts.values()]

    def _monitor_round(self, mon: SimMonitor) -> None:
        new = claim_lease(self.lease, mon.name, self.now, self.cfg.lease_ttl_s)
        if new is None:
            return
        takeover = self.lease is not None and self.lease.holder != mon.name
        self.lease = new
        if not may_act(self.lease, mon.name, self.now):
            return
        events, self.events = tuple(self.events), []
        obs = Observation(self._host_records(), dict(self.last_beat),
                          [replace(v) for v in self.vms.values()], events,
                          takeover=takeover, witness=dict(self.answered))
        decision = decide(obs, self.state(), self.cfg, self.now)
        crash = mon.crashes(decision)
        if crash == "before_persist":
            mon.alive = False
            return
        self.stored_state = decision.state.to_dict()
        self.decisions.append(decision)
        actions = list(decision.actions)
        if crash in ("after_persist", "mid_actions"):
            actions = actions[: mon.keep_actions] if crash == "mid_actions" else []
            mon.alive = False
        for action in actions:
            self.actions.append((self.now, mon.name, action))
            self._execute(action)

    # -- executors ------------------------------------------------------------------
    def _execute(self, action: Action) -> None:
        if isinstance(action, Fence):
            self._fence(action)
        elif isinstance(action, Recover):
            self._recover(action)
            if self.duplicate_recovers:
                self.later(self.dt * 3, lambda: self._recover(action))
        elif isinstance(action, MarkDown):
            vm = self.vms[action.vm]
            if vm.host == action.host:
                vm.state = VMState.DOWN.value

    def _fence(self, action: Fence) -> None:
        h = self.hosts[action.host]

        def done() -> None:
            if h.fence_mode == "ok":
                self.power_off(h.name)
                self.events.append(FenceResult(h.name, True, "power off confirmed"))
            elif h.fence_mode == "fail":
                self.events.append(FenceResult(h.name, False, "BMC unreachable"))
            elif h.fence_mode == "lie":  # a broken agent: claims off, cuts nothing
                self.events.append(FenceResult(h.name, True, "power off confirmed"))
            elif h.fence_mode == "manual":
                self.events.append(FenceResult(h.name, False, "needs operator", True))
            else:
                self.events.append(FenceResult(h.name, False, "timed out"))

        delay = action.timeout_s if h.fence_mode == "hang" else h.fence_delay_s
        self.later(delay, done)

    def _recover(self, action: Recover) -> None:
        vm = self.vms[action.vm]
        if vm.host != action.source:
            self.skipped.append(f"{self.now}: {action.vm} already moved to {vm.host}")
            return
        source = self.state().hosts.get(action.source)
        if source is None or source.state not in CONFIRMED_OFF:
            self.violations.append(f"{self.now}: restart of {vm.name} committed while "
                                   f"{action.source} is not confirmed off")
        vm.host, vm.state = action.target, VMState.RUNNING.value
        self.later(self.start_delay_s, lambda: self._start(action))

    def _start(self, action: Recover) -> None:
        vm, target = self.vms[action.vm], self.hosts[action.target]
        if not target.powered:
            if vm.host == action.target:
                vm.host, vm.state = action.source, VMState.DOWN.value
            self.events.append(RecoverResult(vm.name, target.name, False, "host off"))
            return
        if self.where(vm.name):
            self.violations.append(f"{self.now}: {vm.name} started on {target.name} while "
                                   f"running on {self.where(vm.name)}")
        target.running.add(vm.name)
        self.starts.append((self.now, vm.name, target.name))
        self.events.append(RecoverResult(vm.name, target.name, True))

    # -- invariants -----------------------------------------------------------------
    def check(self) -> None:
        """Record every invariant broken at this instant in ``violations``."""
        for vm in self.vms.values():
            where = self.where(vm.name)
            if len(where) > 1:
                self.violations.append(f"{self.now}: {vm.name} runs on {where}")
            if where and vm.host != where[0]:
                self.violations.append(f"{self.now}: {vm.name} runs on {where[0]} but its "
                                       f"record says {vm.host}")
        for h in self.hosts.values():
            if not h.powered:
                continue
            guests = [self.vms[v] for v in h.running]
            if sum(v.vcpus for v in guests) > h.vcpus or \
                    sum(v.memory_mib for v in guests) > h.memory_mib:
                self.violations.append(f"{self.now}: {h.name} overcommitted")
            groups = [v.group for v in guests if v.group]
            if len(groups) != len(set(groups)):
                self.violations.append(f"{self.now}: anti-affinity broken on {h.name}")
