"""A small fleet whose every step is one call into fleet's real executors, for random
interleavings (``test_interleavings``, ``bench.interleavings``).

The store is a real Redis; controller (``JobService``), runner (``MigrationRunner``),
reconciler, failover's executors (``settle_orphans``, ``adopt``, ``restart``), the VM
guard's ``start_in_place``, the stray sweep and the sweepers run as they do in the
product. Hypervisors are ``StepHypervisor``s over one in-memory ``World`` whose
migrations finish within the call (so a step boundary never falls inside libvirt's
own switch-over), with libvirt's late faults on demand. Celery is a list of messages
that steps deliver, lose or deliver twice. The clock is a number the steps move on.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from fleet.core.hypervisor import (
    DestinationError,
    DomainGone,
    DomainInfo,
    DomainSpec,
    DomainState,
    JobStats,
    MigrationParams,
    MigrationTarget,
    PermanentError,
    TransientError,
)
from fleet.core.models import VM, Host, Move, VMState
from fleet.settings import Settings
from fleet.store import Keys, Store
from fleet.store.jobs import RESTART_LOCK
from fleet.store.records import load

R, P, S = DomainState.RUNNING, DomainState.PAUSED, DomainState.SHUTOFF
HOSTS = ("h1", "h2", "h3")
VMS = ("a", "b", "c", "d")
HOST_MEMORY = 3072  # three 1 GiB VMs fill a host: a plan that overcommits shows
_OVERRIDES: dict[str, Any] = {
    "poll_interval_s": 0.01, "move_lease_s": 30, "migrate_retries": 0, "move_settle_s": 0,
    "move_unreachable_s": 0, "stall_timeout_s": 30, "redeliver_after_s": 60,
    "pending_job_after_s": 60}
SETTINGS = Settings(**_OVERRIDES)
_prefixes = itertools.count()
_clients: dict[tuple[int, str], redis.Redis] = {}
PURGE = """
local cursor, count = "0", 0
repeat
  local page = redis.call("SCAN", cursor, "MATCH", ARGV[1], "COUNT", 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do count = count + redis.call("UNLINK", key) end
until cursor == "0"
return count
"""
"""Deletes every key of one prefix in one round trip (``Store.purge`` takes one each)."""
LOCKS = """
local out = {}
for i, lock in ipairs(KEYS) do
  local owner, move, job = redis.call("GET", lock) or "", "", 0
  if owner ~= "" and string.sub(owner, 1, #ARGV[3]) ~= ARGV[3] then
    move = redis.call("GET", ARGV[1] .. owner) or ""
    if move ~= "" then job = redis.call("EXISTS", ARGV[2] .. cjson.decode(move).job_id) end
  end
  out[i] = {owner, move, job}
end
return out
"""
"""Each VM lock's owner, the owning move's record and whether its job exists, read in
one round trip ("" and 0 where absent; restart owners are not followed)."""


class Crash(BaseException):
    """The process running this step dies here (nothing after it runs)."""


@dataclass
class World:
    """What every host's hypervisor holds; faults and crashes armed for the next call."""

    domains: dict[str, dict[str, DomainInfo]] = field(
        default_factory=lambda: {h: {} for h in HOSTS})
    off: set[str] = field(default_factory=set)
    fault: str = ""  # "" | before | after | both: how the next migration ends
    crash: str = ""  # "" | migrate_start | migrate_end | start | hold (see ``migrate``)
    gate: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    kill_held: bool = False  # the held migration's host lost power meanwhile

    def running(self, vm: str) -> list[str]:
        return [h for h, doms in self.domains.items()
                if vm in doms and doms[vm].state is R and h not in self.off]

    def power_off(self, host: str) -> None:
        """Power loss: running guests die; definitions come back shut off later."""
        self.off.add(host)
        self.domains[host] = {n: DomainInfo(n, d.uuid, S, d.vcpus, d.memory_mib)
                              for n, d in self.domains[host].items()}

    def take(self, what: str) -> str:
        """The armed fault or crash named ``what``, disarmed."""
        value = str(getattr(self, what))
        setattr(self, what, "")
        return value


class StepHypervisor:
    """``fleet.core.hypervisor.Hypervisor`` over the shared ``World``."""

    def __init__(self, world: World, host: str) -> None:
        self.world, self.host = world, host

    @property
    def _mine(self) -> dict[str, DomainInfo]:
        if self.host in self.world.off:
            raise TransientError(f"{self.host} does not answer")
        return self.world.domains[self.host]

    def list_domains(self) -> list[DomainInfo]:
        return list(self._mine.values())

    def lookup(self, name: str) -> DomainInfo:
        if name not in self._mine:
            raise DomainGone(f"{name} not on {self.host}")
        return self._mine[name]

    def _set(self, name: str, state: DomainState, cancelled: bool = False) -> None:
        d = self.lookup(name)
        self._mine[name] = DomainInfo(name, d.uuid, state, d.vcpus, d.memory_mib,
                                      cancelled=cancelled)

    def start(self, spec: DomainSpec) -> DomainInfo:
        if self.world.take("crash") == "start":
            raise Crash("the agent died before the domain started")
        self._mine[spec.name] = DomainInfo(spec.name, spec.uuid, R, spec.vcpus,
                                           spec.memory_mib)
        return self._mine[spec.name]

    def define(self, spec: DomainSpec) -> DomainInfo:
        self._mine.setdefault(spec.name, DomainInfo(spec.name, spec.uuid, S, spec.vcpus,
                                                    spec.memory_mib))
        return self._mine[spec.name]

    def destroy(self, name: str) -> None:
        self._mine.pop(name, None)

    def pause(self, name: str) -> None:
        self._set(name, P)

    def resume(self, name: str) -> None:
        self._set(name, R)

    def shutdown(self, name: str, timeout_s: float) -> None:
        self._set(name, S)

    def migrate(self, name: str, target: MigrationTarget, params: MigrationParams) -> None:
        """Instant, unless ``hold``: then the migration waits until the world's gate
        opens, while other steps run (a slow migration)."""
        crash = self.world.take("crash")
        if crash == "migrate_start":
            raise Crash("the agent died as the migration began")
        if crash == "hold":
            self.world.arrived.set()
            self.world.gate.wait(30)
            if self.world.kill_held:
                raise Crash("the host lost power during the migration")
        source = self.lookup(name)
        fault = self.world.take("fault")
        there = self.world.domains[target.host]
        if target.host in self.world.off or fault == "before" or name in there:
            raise DestinationError(f"migrate {name}: client socket is closed")
        there[name] = DomainInfo(name, source.uuid, R, source.vcpus, source.memory_mib)
        if fault == "both":
            self._set(name, R, cancelled=True)
        else:
            del self._mine[name]
        if self.world.take("crash") == "migrate_end":
            raise Crash("the agent died as the migration ended")
        if fault in ("both", "after"):
            raise TransientError(f"migrate {name}: client socket is closed")

    def job_stats(self, name: str) -> JobStats | None:
        return None

    def abort_job(self, name: str) -> None:
        """Migrations end within the call: nothing to abort."""

    def start_postcopy(self, name: str) -> None:
        raise PermanentError("no post-copy here")

    def set_max_downtime(self, name: str, downtime_ms: int) -> None:
        """Nothing to tune: migrations end within the call."""

    def healthy(self) -> bool:
        return self.host not in self.world.off

    def node_facts(self) -> None:
        return None

    def definition(self, name: str) -> str:
        return ""

    def preflight(self, needs: object, definition: str, reported: object) -> list[str]:
        _ = self._mine  # a host that does not answer cannot be asked
        return []

    def watch(self, wake: object) -> None:
        return None

    def close(self) -> None:
        """Nothing to release."""


def client(url: str) -> redis.Redis:
    """This process's client of ``url`` for every example: one connection for single
    commands (behind a lock, so the thread of a held migration may share it), pooled
    ones for transactions, as every ``pipeline()`` takes its own."""
    key = (os.getpid(), url)
    if key not in _clients:
        _clients[key] = redis.Redis.from_url(url, decode_responses=True,
                                             single_connection_client=True)
    return _clients[key]


def purge(store: Store) -> int:
    """Delete every key under the store's prefix (what ``Store.purge`` does)."""
    return int(store.r.eval(PURGE, 0, store.keys.pattern))


def lock_owners(store: Store) -> dict[str, tuple[str, Move | None, bool]]:
    """Per VM whose lock is held: its owner, the owner's move (None if it is gone or a
    restart owns the lock) and whether that move's job exists."""
    keys = store.keys
    rows = store.r.eval(LOCKS, len(VMS), *(keys.vm_lock(vm) for vm in VMS), keys.move(""),
                        keys.job(""), RESTART_LOCK)
    return {vm: (owner, load(Move, move or None), bool(job))
            for vm, (owner, move, job) in zip(VMS, rows, strict=True) if owner}


def new_fleet(url: str) -> tuple[Store, World, list[float]]:
    """A store under a fresh prefix with three hosts and four 1 GiB VMs (a, b on h1;
    c on h2; d on h3), HA, and a clock the caller moves."""
    now = [1000.0]
    serial = itertools.count()
    store = Store(client(url), Keys(f"il{os.getpid()}-{next(_prefixes)}"), clock=lambda: now[0],
                  ids=lambda: f"{next(serial):016x}")
    world = World()
    for name in HOSTS:
        store.put_host(Host(name, vcpus=16, memory_mib=HOST_MEMORY))
    for vm, host in zip(VMS, ("h1", "h1", "h2", "h3"), strict=True):
        record = VM(vm, f"u-{vm}", host, 1, 1024, ha=True, definition=f"<domain>{vm}</domain>")
        store.put_vm(record)
        world.domains[host][vm] = DomainInfo(vm, record.uuid, R, 1, 1024)
    return store, world, now


def live_hosts(store: Store, world: World) -> Iterator[str]:
    return (h for h in HOSTS if h not in world.off)


def vm_states(store: Store) -> dict[str, tuple[str, str]]:
    return {vm.name: (vm.host, vm.state) for vm in store.list_vms()}


def settled_ok(state: tuple[str, str], running: list[str]) -> bool:
    """A record agrees with the world: it names the one host running the VM, or says
    the VM runs nowhere."""
    host, recorded = state
    if running:
        return running == [host] and recorded == VMState.RUNNING.value
    return recorded in (VMState.DOWN.value, VMState.STOPPED.value)
