"""Capacity claims: what in-flight moves reserve on their destinations.

A reservation is one script against the host's claims and the capacity ledger
(``store/ledger.py``), atomic against every other reservation, so concurrent plans never
overcommit a host. Mixed into ``Store``.
"""

from __future__ import annotations

import json
from typing import Any

from fleet.core.models import VM
from fleet.store import ledger
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
        """Reserve capacity on ``host`` unless its VMs plus claims would pass ``limit``.

        One script reads the host's ledger counters and claims and writes the claim, so
        concurrent plans never overcommit a host, and the cost does not grow with the fleet.
        """
        args = (move_id, vcpus, memory_mib, limit[0], limit[1], host, CHANGES_MAXLEN)
        keys = (self.keys.claims(host), self.keys.usage, self.keys.changes)
        done = int(self.r.eval(ledger.RESERVE, 3, *keys, *args))
        if done == ledger.NOT_BUILT:
            self.rebuild_ledger()
            done = int(self.r.eval(ledger.RESERVE, 3, *keys, *args))
        return done == 1

    def rebuild_ledger(self) -> None:
        """Recount the capacity ledger from every VM record (atomic; for a store written
        before the ledger existed, or records written around the store)."""
        self.r.eval(ledger.REBUILD, 2, self.keys.vms, self.keys.usage, self.keys.vm_prefix)

    def ledger_usage(self) -> dict[str, tuple[int, int]]:
        """Per host, vCPUs and MiB its VM records use, from the ledger."""
        raw = self.r.hgetall(self.keys.usage)
        if ledger.BUILT not in raw:
            self.rebuild_ledger()
            raw = self.r.hgetall(self.keys.usage)
        return ledger.used(raw)

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
        return _sum_claims(self.r.hvals(self.keys.claims(host)))

    def usage(self, vms: list[VM] | None = None) -> dict[str, tuple[int, int]]:
        """Per host, vCPUs and MiB used by its VMs (``vms``, else the ledger) plus
        reserved by in-flight moves; two round trips whatever the fleet's size."""
        used: dict[str, tuple[int, int]] = {}
        if vms is None:
            used = self.ledger_usage()
        for vm in vms or []:
            cpu, mem = used.get(vm.host, (0, 0))
            used[vm.host] = (cpu + vm.vcpus, mem + vm.memory_mib)
        hosts = sorted(self.r.smembers(self.keys.hosts))
        with self.r.pipeline(transaction=False) as pipe:
            for host in hosts:
                pipe.hvals(self.keys.claims(host))
            claims = pipe.execute()
        for host, values in zip(hosts, claims, strict=True):
            cpu, mem = used.get(host, (0, 0))
            c_cpu, c_mem = _sum_claims(values)
            used[host] = (cpu + c_cpu, mem + c_mem)
        return used


def _sum_claims(values: list[str]) -> tuple[int, int]:
    claims = [json.loads(v) for v in values]
    return sum(c["vcpus"] for c in claims), sum(c["memory_mib"] for c in claims)
