"""The simulated hypervisor: domains of simulated hosts kept in Redis.

A migration runs a ``PrecopyModel`` forward in (speed-scaled) wall time inside the
caller's thread, publishing libvirt-like job statistics under a key that expires if the
runner dies. The switchover is one Redis transaction, so a domain is never on two hosts.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
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
    PoweredOff,
)
from fleet.core.migration_model import PrecopyModel
from fleet.store.keys import Keys

TICK_S = 0.1
JOB_TTL_MS = 3000


class SimHypervisor:
    """One simulated host's hypervisor."""

    def __init__(self, client: redis.Redis, keys: Keys, host: str,
                 speed: float = 1.0, bandwidth_mib_s: float = 1000.0) -> None:
        self.r: Any = client
        self.keys = keys
        self.host = host
        self.speed = speed
        self.bandwidth_mib_s = bandwidth_mib_s

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
                          migrating=bool(data.get("migrating")))

    def list_domains(self) -> list[DomainInfo]:
        raws = self.r.hvals(self.keys.sim_host(self.host))
        return [self._info(json.loads(raw)) for raw in raws]

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

    def crash(self, name: str) -> None:
        """The guest dies alone (QEMU crashed): its domain stays defined, ``crashed``."""
        self._set_state(name, DomainState.CRASHED)

    def _set_state(self, name: str, state: DomainState) -> None:
        info = self.lookup(name)
        data = self._raw(self.host, name) or {}
        self._put(self.host, replace(info, state=state), float(str(data.get("dirty_mib_s", 0.0))))

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
        except BaseException:
            self.r.hdel(self.keys.sim_host(target.host), name)
            self.r.delete(self.keys.sim_job(self.host, name))
            raise
        self._switch_over(source, target.host, model.dirty_mib_s)

    def _run(self, name: str, model: PrecopyModel) -> None:
        while not model.done:
            time.sleep(TICK_S)
            if self.r.delete(self.keys.sim_abort(self.host, name)):
                raise PermanentError("migration aborted")
            model.advance(TICK_S * self.speed)
            stats = JobStats(model.processed_mib, model.remaining_mib, model.memory_mib,
                             model.bandwidth_mib_s, model.dirty_mib_s, model.iteration,
                             model.elapsed_s, model.expected_downtime_ms)
            self.r.set(self.keys.sim_job(self.host, name), json.dumps(asdict(stats)),
                       px=JOB_TTL_MS)

    def _switch_over(self, source: DomainInfo, dest: str, dirty: float) -> None:
        running = DomainInfo(source.name, source.uuid, DomainState.RUNNING, source.vcpus,
                             source.memory_mib)
        with self.r.pipeline() as pipe:
            pipe.hdel(self.keys.sim_host(self.host), source.name)
            self._put(dest, running, dirty, pipe)
            pipe.delete(self.keys.sim_job(self.host, source.name))
            pipe.execute()

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

