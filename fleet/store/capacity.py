"""Capacity claims: what in-flight moves reserve on their destinations.

A reservation is atomic against every other reservation on the same host (WATCH on the
host's claims hash), so concurrent plans never overcommit it. Mixed into ``Store``.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from fleet.core.errors import Conflict
from fleet.core.models import VM
from fleet.store.changes import CHANGES_MAXLEN, RELEASE, changed
from fleet.store.keys import Keys


class Capacity:
    """Reservations and usage; needs ``r``, ``keys`` and ``list_vms`` from ``Store``."""

    r: Any
    keys: Keys

    def list_vms(self) -> list[VM]:
        raise NotImplementedError

    def reserve(self, host: str, move_id: str, vcpus: int, memory_mib: int) -> None:
        """Reserve unconditionally (recovery of a known placement, tests)."""
        claim = {"vcpus": vcpus, "memory_mib": memory_mib}
        with self.r.pipeline() as pipe:
            pipe.hset(self.keys.claims(host), move_id, json.dumps(claim))
            changed(pipe, self.keys, "claim", host=host, move=move_id, sign=1, claim=claim)
            pipe.execute()

    def try_reserve(self, host: str, move_id: str, vcpus: int, memory_mib: int,
                    limit: tuple[float, int]) -> bool:
        """Reserve capacity on ``host`` unless VMs plus claims would pass ``limit``.

        Atomic against other reservations on the same host (WATCH on its claims), so
        concurrent plans never overcommit it.
        """
        key = self.keys.claims(host)
        claim = json.dumps({"vcpus": vcpus, "memory_mib": memory_mib})
        for _ in range(50):
            with self.r.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    claims = [json.loads(v) for k, v in pipe.hgetall(key).items()
                              if k != move_id]
                    cpu = sum(c["vcpus"] for c in claims) + vcpus
                    mem = sum(c["memory_mib"] for c in claims) + memory_mib
                    vm_cpu, vm_mem = self._vm_usage(host)
                    if cpu + vm_cpu > limit[0] or mem + vm_mem > limit[1]:
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    pipe.hset(key, move_id, claim)
                    changed(pipe, self.keys, "claim", host=host, move=move_id, sign=1,
                            claim=json.loads(claim))
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue
        raise Conflict(f"too much contention reserving on {host}")

    def _vm_usage(self, host: str) -> tuple[int, int]:
        mine = [v for v in self.list_vms() if v.host == host]
        return sum(v.vcpus for v in mine), sum(v.memory_mib for v in mine)

    def release(self, host: str, move_id: str) -> None:
        """Drop a claim (and record that in the change stream) if it exists."""
        if host:
            self.r.eval(RELEASE, 2, self.keys.claims(host), self.keys.changes, move_id, host,
                        CHANGES_MAXLEN)

    def claims_of(self, host: str) -> dict[str, dict[str, int]]:
        """The claims on ``host`` by move id."""
        return {k: json.loads(v) for k, v in self.r.hgetall(self.keys.claims(host)).items()}

    def claimed(self, host: str) -> tuple[int, int]:
        """vCPUs and MiB reserved on ``host`` by in-flight moves."""
        claims = [json.loads(v) for v in self.r.hvals(self.keys.claims(host))]
        return sum(c["vcpus"] for c in claims), sum(c["memory_mib"] for c in claims)

    def usage(self, vms: list[VM] | None = None) -> dict[str, tuple[int, int]]:
        """Per host, vCPUs and MiB used by its VMs (``vms``, else read) plus reserved by
        in-flight moves."""
        used: dict[str, tuple[int, int]] = {}
        for vm in self.list_vms() if vms is None else vms:
            cpu, mem = used.get(vm.host, (0, 0))
            used[vm.host] = (cpu + vm.vcpus, mem + vm.memory_mib)
        for host in self.r.smembers(self.keys.hosts):
            cpu, mem = used.get(host, (0, 0))
            c_cpu, c_mem = self.claimed(host)
            used[host] = (cpu + c_cpu, mem + c_mem)
        return used
