"""Recovery planning: where the HA VMs of fenced hosts restart, highest priority first.

Pure: given the VM records, the hosts that may receive VMs, what is already in flight
and the clock value, ``plan_recovery`` returns restarts, VMs to report down and VMs
that fit nowhere (retried on every later call, as capacity appears).

Rules:

* Candidates are the HA VMs recorded on a confirmed-off host (fenced or recovering)
  that were not stopped on purpose and have no restart in flight.
* They are placed in order of priority (highest first, then name) by
  ``placement.pick_host`` on the eligible hosts only, counting running VMs, in-flight
  restarts and outside claims, so nothing is overcommitted.
* A non-empty ``group`` is an anti-affinity group: a host that runs (or is receiving)
  a VM of the group is excluded for the others.
* A host where a restart of the VM failed is excluded for it for ``exclude_for_s``.
* Non-HA VMs of such hosts, and HA VMs that fit nowhere, are reported down once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fleet.core.models import VM, Host, VMState
from fleet.core.placement import pick_host

_STOPPED = frozenset({VMState.STOPPED.value, VMState.STOPPING.value})  # an operator's intent
_IDLE = _STOPPED | {VMState.DOWN.value}


@dataclass(frozen=True)
class Pending:
    """A restart the monitor asked for and has not seen settle yet."""

    vm: str
    source: str
    target: str
    issued_at: float


@dataclass(frozen=True)
class Restart:
    """Restart ``vm`` (recorded on ``source``) on ``target``."""

    vm: str
    source: str
    target: str
    priority: int


@dataclass(frozen=True)
class RecoveryPlan:
    """What one planning round decided."""

    restarts: tuple[Restart, ...] = ()
    mark_down: tuple[VM, ...] = ()
    unplaced: tuple[str, ...] = ()
    remaining: frozenset[str] = field(default_factory=frozenset)
    """Confirmed-off hosts that still have VMs to restart, restarts in flight, or VMs
    to report down."""


def usage(vms: Iterable[VM], pending: Iterable[Pending], sizes: Mapping[str, VM],
          claims: Mapping[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """vCPUs and MiB used per host: live VMs, restarts in flight and outside claims."""
    used: dict[str, tuple[int, int]] = {h: (c, m) for h, (c, m) in claims.items()}
    moving = {p.vm for p in pending}
    for vm in vms:
        if vm.state not in _IDLE and vm.name not in moving:
            _add(used, vm.host, vm)
    for p in pending:
        if p.vm in sizes:
            _add(used, p.target, sizes[p.vm])
    return used


def _add(used: dict[str, tuple[int, int]], host: str, vm: VM) -> None:
    cpu, mem = used.get(host, (0, 0))
    used[host] = (cpu + vm.vcpus, mem + vm.memory_mib)


def group_hosts(vms: Iterable[VM], pending: Iterable[Pending], sizes: Mapping[str, VM],
                ) -> dict[str, set[str]]:
    """Hosts per anti-affinity group, counting live VMs and restarts in flight."""
    groups: dict[str, set[str]] = {}
    moving = {p.vm for p in pending}
    for vm in vms:
        if vm.group and vm.state not in _IDLE and vm.name not in moving:
            groups.setdefault(vm.group, set()).add(vm.host)
    for p in pending:
        moving_vm = sizes.get(p.vm)
        if moving_vm is not None and moving_vm.group:
            groups.setdefault(moving_vm.group, set()).add(p.target)
    return groups


def candidates(vms: Iterable[VM], dead: frozenset[str], pending: Mapping[str, Pending],
               ) -> list[VM]:
    """HA VMs of confirmed-off hosts still to restart, highest priority first."""
    todo = [vm for vm in vms if vm.host in dead and vm.ha
            and vm.state not in _STOPPED and vm.name not in pending]
    return sorted(todo, key=lambda vm: (-vm.priority, vm.name))


def plan_recovery(
    vms: list[VM],
    targets: list[Host],
    dead: frozenset[str],
    pending: Mapping[str, Pending],
    excluded: Mapping[str, Mapping[str, float]],
    now: float,
    claims: Mapping[str, tuple[int, int]] | None = None,
) -> RecoveryPlan:
    """Restarts for the HA VMs of ``dead`` hosts on ``targets``; see the module doc.

    ``targets`` must hold only hosts that may receive VMs (alive, active, not in
    maintenance); ``excluded`` maps a VM to hosts it must avoid until a time.
    """
    sizes = {vm.name: vm for vm in vms}
    used = usage(vms, pending.values(), sizes, claims or {})
    groups = group_hosts(vms, pending.values(), sizes)
    restarts: list[Restart] = []
    unplaced: list[str] = []
    for vm in candidates(vms, dead, pending):
        avoid = {h for h, until in excluded.get(vm.name, {}).items() if until > now}
        if vm.group:
            avoid |= groups.get(vm.group, set())
        target = pick_host(vm, targets, used, avoid)
        if target is None:
            unplaced.append(vm.name)
            continue
        restarts.append(Restart(vm.name, vm.host, target, vm.priority))
        _add(used, target, vm)
        if vm.group:
            groups.setdefault(vm.group, set()).add(target)
    down = tuple(vm for vm in vms if vm.host in dead and vm.state not in _IDLE
                 and (not vm.ha or vm.name in unplaced))
    remaining = {vm.host for vm in vms if vm.host in dead and vm.name in unplaced}
    remaining |= {p.source for p in pending.values() if p.source in dead}
    remaining |= {vm.host for vm in down}
    remaining |= {r.source for r in restarts}
    return RecoveryPlan(tuple(restarts), down, tuple(unplaced), frozenset(remaining))


def settle_pending(pending: Mapping[str, Pending], vms: Mapping[str, VM],
                   timeout_s: float, now: float) -> tuple[dict[str, Pending], list[Pending]]:
    """Drop restarts that settled elsewhere or timed out; return (kept, expired).

    A restart stays pending until its ``RecoverResult`` arrives (the caller pops it)
    or ``timeout_s`` passes. If the VM record names neither its source nor its target,
    someone else moved it: dropped. If it timed out with the record still on the source,
    the executor never committed it: it is returned as expired and may be planned again
    (the executor's compare-and-set on the source keeps a late duplicate from starting).
    If it timed out with the record on the target, the start is the executor's (and the
    reconciler's) business: dropped.
    """
    kept: dict[str, Pending] = {}
    expired: list[Pending] = []
    for name, p in pending.items():
        vm = vms.get(name)
        if vm is None or vm.host not in (p.source, p.target):
            continue
        if now - p.issued_at < timeout_s:
            kept[name] = p
        elif vm.host == p.source:
            expired.append(p)
    return kept, expired
