"""The simulated hypervisor: domains of simulated hosts kept in Redis.

A migration runs a ``PrecopyModel`` forward in (speed-scaled) wall time inside the
caller's thread, publishing libvirt-like job statistics under a key that expires if the
runner dies. Its end is not atomic, as measured on libvirt 9.0 / QEMU 7.2 peer to peer:
first the destination copy resumes (``running``) while the source copy stays ``paused``
with its job still reported, then, ``switch_gap_s`` of wall time later, the source copy
is removed and the job ends; only then does ``migrate`` return.

Fault knobs, kept in Redis so a test can set them for an agent in another process
(``inject(fault, count)`` on the source host, consumed one per migration that reaches the
switch-over; ``clear_faults()``):

- ``fail_before_switchover``: ``DestinationError`` just before the switch-over; the
  destination's incoming domain is removed, the source copy keeps running (a destination
  libvirtd killed mid-migration).
- ``error_in_gap``: ``TransientError`` while the destination runs and the source copy is
  paused; the source copy is still removed after the gap, by a timer.
- ``both_running``: the destination resumes, then after the gap the source copy resumes
  too (``cancelled``, as libvirt's "running (migration cancelled)"): both ``running``, no
  job, and ``TransientError``; nothing removes either copy (a destination libvirtd killed
  right after the guest resumed there).
- ``error_after_switchover``: a complete switch-over (destination running, source gone),
  then ``TransientError`` (the destination libvirtd killed a moment later).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from typing import Any

import redis

from fleet.core.errors import InvalidInput
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
    PoweredOff,
    TransientError,
)
from fleet.core.migration_model import PrecopyModel
from fleet.core.nodefacts import NodeFacts
from fleet.store.keys import Keys

TICK_S = 0.1
JOB_TTL_MS = 3000
SWITCH_GAP_S = 0.2

FAIL_BEFORE_SWITCHOVER = "fail_before_switchover"
ERROR_IN_GAP = "error_in_gap"
BOTH_RUNNING = "both_running"
ERROR_AFTER_SWITCHOVER = "error_after_switchover"
FAULTS = (FAIL_BEFORE_SWITCHOVER, ERROR_IN_GAP, BOTH_RUNNING, ERROR_AFTER_SWITCHOVER)
"""Fault knobs, in the order one is taken when several are armed."""

_TAKE_FAULT = """
for _, name in ipairs(ARGV) do
  local left = tonumber(redis.call('HGET', KEYS[1], name) or '0')
  if left > 0 then
    if left == 1 then redis.call('HDEL', KEYS[1], name)
    else redis.call('HINCRBY', KEYS[1], name, -1) end
    return name
  end
end
return false
"""


def survey(client: redis.Redis, keys: Keys, hosts: Sequence[str],
           ) -> dict[str, list[dict[str, str]] | None]:
    """Each simulated host's domains (name and state) read in one round trip, or None for
    a host without power: what the heartbeats of an agent serving many hosts need."""
    with client.pipeline(transaction=False) as pipe:
        for host in hosts:
            pipe.get(keys.sim_power(host))
            pipe.hvals(keys.sim_host(host))
        replies = pipe.execute()
    seen: dict[str, list[dict[str, str]] | None] = {}
    for i, host in enumerate(hosts):
        power, raws = replies[2 * i], replies[2 * i + 1]
        seen[host] = None if power == "off" else [
            {"name": str(d["name"]), "state": str(d["state"])} for d in map(json.loads, raws)]
    return seen


class SimHypervisor:
    """One simulated host's hypervisor."""

    def __init__(self, client: redis.Redis, keys: Keys, host: str,
                 speed: float = 1.0, bandwidth_mib_s: float = 1000.0,
                 switch_gap_s: float = SWITCH_GAP_S) -> None:
        if switch_gap_s < 0:
            raise ValueError("switch_gap_s must not be negative")
        self.r: Any = client
        self.keys = keys
        self.host = host
        self.speed = speed
        self.bandwidth_mib_s = bandwidth_mib_s
        self.switch_gap_s = switch_gap_s

    # -- inventory ---------------------------------------------------------------
    def _raw(self, host: str, name: str) -> dict[str, object] | None:
        raw = self.r.hget(self.keys.sim_host(host), name)
        return None if raw is None else dict(json.loads(raw))

    def _put(self, host: str, info: DomainInfo, dirty: float, pipe: redis.Redis | None = None,
             ) -> None:
        data = {**asdict(info), "state": info.state.value, "dirty_mib_s": dirty}
        (pipe or self.r).hset(self.keys.sim_host(host), info.name, json.dumps(data))

    @staticmethod
    def _info(data: dict[str, object]) -> DomainInfo:
        return DomainInfo(name=str(data["name"]), uuid=str(data["uuid"]),
                          state=DomainState(str(data["state"])), vcpus=int(str(data["vcpus"])),
                          memory_mib=int(str(data["memory_mib"])),
                          migrating=bool(data.get("migrating")),
                          cancelled=bool(data.get("cancelled")))

    def list_domains(self) -> list[DomainInfo]:
        raws = self.r.hvals(self.keys.sim_host(self.host))
        return [self._info(json.loads(raw)) for raw in raws]

    def node_facts(self) -> NodeFacts | None:
        return None  # a simulated host's capacity is what it was registered with

    def definition(self, name: str) -> str:
        return ""

    def preflight(self, needs: Sequence[str], definition: str,
                  reported: dict[str, Any]) -> list[str]:
        return sorted(self.r.smembers(self.keys.sim_refusals(self.host)))

    def refuse(self, reason: str) -> None:
        """Make this host's pre-flight fail with ``reason`` (until ``clear_faults``)."""
        self.r.sadd(self.keys.sim_refusals(self.host), reason)

    def watch(self, wake: Callable[[str], None]) -> None:
        return None  # simulated domains change only through fleet

    def lookup(self, name: str) -> DomainInfo:
        data = self._raw(self.host, name)
        if data is None:
            raise DomainGone(f"domain {name} not found on {self.host}")
        return self._info(data)

    def start(self, spec: DomainSpec) -> DomainInfo:
        self._powered()
        info = DomainInfo(spec.name, spec.uuid, DomainState.RUNNING, spec.vcpus, spec.memory_mib)
        self._put(self.host, info, spec.dirty_mib_s)
        return info

    def define(self, spec: DomainSpec) -> DomainInfo:
        self._powered()
        info = DomainInfo(spec.name, spec.uuid, DomainState.SHUTOFF, spec.vcpus, spec.memory_mib)
        if self._raw(self.host, spec.name) is None:
            self._put(self.host, info, spec.dirty_mib_s)
        return self.lookup(spec.name)

    def destroy(self, name: str) -> None:
        self.r.hdel(self.keys.sim_host(self.host), name)

    def shutdown(self, name: str, timeout_s: float) -> None:
        self._set_state(name, DomainState.SHUTOFF)

    def pause(self, name: str) -> None:
        self._powered()
        if self.lookup(name).state is not DomainState.PAUSED:
            self._set_state(name, DomainState.PAUSED, frm=DomainState.RUNNING)

    def resume(self, name: str) -> None:
        self._powered()
        if self.lookup(name).state is not DomainState.RUNNING:
            self._set_state(name, DomainState.RUNNING, frm=DomainState.PAUSED)

    def crash(self, name: str) -> None:
        """The guest dies alone (QEMU crashed): its domain stays defined, ``crashed``."""
        self._set_state(name, DomainState.CRASHED)

    def _set_state(self, name: str, state: DomainState, frm: DomainState | None = None,
                   ) -> None:
        info = self.lookup(name)
        if frm is not None and info.state is not frm:
            raise PermanentError(f"domain {name} on {self.host} is {info.state}, not {frm}")
        data = self._raw(self.host, name) or {}
        self._put(self.host, replace(info, state=state, cancelled=False),
                  float(str(data.get("dirty_mib_s", 0.0))))

    def healthy(self) -> bool:
        self._powered()
        return bool(self.r.ping())

    def _powered(self) -> None:
        if self.r.get(self.keys.sim_power(self.host)) == "off":
            raise PoweredOff(f"simulated host {self.host} has no power")

    def power_off(self) -> None:
        """Cut the simulated host's power: its guests die, its agent falls silent."""
        with self.r.pipeline() as pipe:
            pipe.set(self.keys.sim_power(self.host), "off")
            pipe.delete(self.keys.sim_host(self.host))
            pipe.execute()

    def power_on(self) -> None:
        self.r.delete(self.keys.sim_power(self.host))

    def powered(self) -> bool:
        return bool(self.r.get(self.keys.sim_power(self.host)) != "off")

    def close(self) -> None:
        """Nothing to release: the Redis pool belongs to the caller."""

    # -- migration ---------------------------------------------------------------
    def migrate(self, name: str, target: MigrationTarget, params: MigrationParams) -> None:
        data = self._raw(self.host, name)
        if data is None:
            raise DomainGone(f"domain {name} not found on {self.host}")
        if self._raw(target.host, name) is not None:
            raise DestinationError(f"domain {name} already exists on {target.host}")
        source = self._info(data)
        bandwidth = params.bandwidth_mib_s or self.bandwidth_mib_s
        model = PrecopyModel(source.memory_mib, bandwidth, float(str(data.get("dirty_mib_s", 0))),
                             max_downtime_ms=params.max_downtime_ms)
        self.r.delete(self.keys.sim_abort(self.host, name))
        incoming = DomainInfo(name, source.uuid, DomainState.PAUSED, source.vcpus,
                              source.memory_mib, migrating=True)
        self._put(target.host, incoming, model.dirty_mib_s)
        try:
            self._run(name, model)
            fault = self._take_fault()
            if fault == FAIL_BEFORE_SWITCHOVER:
                raise DestinationError(f"{_what(name, self.host, target)}: client socket is closed")
        except BaseException:
            self.r.hdel(self.keys.sim_host(target.host), name)
            self.r.delete(self.keys.sim_job(self.host, name))
            raise
        self._switch_over(source, target, model, fault)

    def _run(self, name: str, model: PrecopyModel) -> None:
        while not model.done:
            time.sleep(TICK_S)
            if self.r.delete(self.keys.sim_abort(self.host, name)):
                raise PermanentError("migration aborted")
            model.advance(TICK_S * self.speed)
            self._publish(name, model)

    def _publish(self, name: str, model: PrecopyModel, pipe: redis.Redis | None = None,
                 ttl_ms: int = JOB_TTL_MS) -> None:
        stats = JobStats(model.processed_mib, model.remaining_mib, model.memory_mib,
                         model.bandwidth_mib_s, model.dirty_mib_s, model.iteration,
                         model.elapsed_s, model.expected_downtime_ms)
        (pipe or self.r).set(self.keys.sim_job(self.host, name), json.dumps(asdict(stats)),
                             px=ttl_ms)

    def _switch_over(self, source: DomainInfo, target: MigrationTarget, model: PrecopyModel,
                     fault: str | None) -> None:
        """Destination resumed and source paused, the gap, then the source copy removed
        (or, by ``fault``, an error somewhere on the way or the source resumed too)."""
        lost = f"{_what(source.name, self.host, target)}: client socket is closed"
        self._resume_destination(source, target.host, model)
        if fault == ERROR_IN_GAP:
            timer = threading.Timer(self.switch_gap_s, self._confirm_quietly, (source.name,))
            timer.daemon = True
            timer.start()
            raise TransientError(lost)
        time.sleep(self.switch_gap_s)
        if fault == BOTH_RUNNING:
            self._resume_source(source, model.dirty_mib_s)
            raise TransientError(lost)
        self._confirm(source.name)
        if fault == ERROR_AFTER_SWITCHOVER:
            raise TransientError(lost)

    def _resume_destination(self, source: DomainInfo, dest: str, model: PrecopyModel) -> None:
        running = replace(source, state=DomainState.RUNNING, migrating=False, cancelled=False)
        paused = replace(source, state=DomainState.PAUSED, migrating=True, cancelled=False)
        ttl_ms = JOB_TTL_MS + round(self.switch_gap_s * 1000)
        with self.r.pipeline() as pipe:
            self._put(dest, running, model.dirty_mib_s, pipe)
            self._put(self.host, paused, model.dirty_mib_s, pipe)
            self._publish(source.name, model, pipe, ttl_ms)
            pipe.execute()

    def _resume_source(self, source: DomainInfo, dirty: float) -> None:
        with self.r.pipeline() as pipe:
            resumed = replace(source, state=DomainState.RUNNING, migrating=False, cancelled=True)
            self._put(self.host, resumed, dirty, pipe)
            pipe.delete(self.keys.sim_job(self.host, source.name))
            pipe.execute()

    def _confirm(self, name: str) -> None:
        with self.r.pipeline() as pipe:
            pipe.hdel(self.keys.sim_host(self.host), name)
            pipe.delete(self.keys.sim_job(self.host, name))
            pipe.execute()

    def _confirm_quietly(self, name: str) -> None:
        """The source copy removed after the caller was told of an error: nobody to tell."""
        try:
            self._confirm(name)
        except redis.RedisError:
            return

    def job_stats(self, name: str) -> JobStats | None:
        raw = self.r.get(self.keys.sim_job(self.host, name))
        return None if raw is None else JobStats(**json.loads(raw))

    def abort_job(self, name: str) -> None:
        if self.job_stats(name) is not None:
            self.r.set(self.keys.sim_abort(self.host, name), "1", px=JOB_TTL_MS)

    def start_postcopy(self, name: str) -> None:
        raise PermanentError("the sim hypervisor has no post-copy")

    def set_max_downtime(self, name: str, downtime_ms: int) -> None:
        """Accepted and ignored: the sim's downtime target is fixed per migration."""

    # -- fault knobs -------------------------------------------------------------
    def inject(self, fault: str, count: int = 1) -> None:
        """Arm ``fault`` for the next ``count`` migrations from this host (see above)."""
        if fault not in FAULTS:
            raise InvalidInput(f"unknown sim fault {fault!r}: choose one of {', '.join(FAULTS)}")
        if count < 1:
            raise InvalidInput("a sim fault's count must be at least 1")
        self.r.hincrby(self.keys.sim_faults(self.host), fault, count)

    def clear_faults(self) -> None:
        """Disarm every fault of this host (and its pre-flight refusals)."""
        self.r.delete(self.keys.sim_faults(self.host), self.keys.sim_refusals(self.host))

    def armed_faults(self) -> dict[str, int]:
        """Faults still armed on this host, with how many migrations each will hit."""
        return {k: int(v) for k, v in self.r.hgetall(self.keys.sim_faults(self.host)).items()}

    def _take_fault(self) -> str | None:
        taken = self.r.eval(_TAKE_FAULT, 1, self.keys.sim_faults(self.host), *FAULTS)
        if isinstance(taken, bytes):
            return taken.decode()
        return None if taken is None else str(taken)


def _what(name: str, host: str, target: MigrationTarget) -> str:
    return f"migrate {name} {host} -> {target.host}"
