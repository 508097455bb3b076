"""What a dead host left half-done, settled from the other hosts' heartbeats.

A migration's destination resumes the guest before the source commits anything. If the
source host loses power in between, the VM already runs on the destination while fleet
still records it on the dead source, and the move's runner died with the host. Failover
must not start a second copy: the monitor asks the live hosts' heartbeat reports first.

* ``running_elsewhere``: the live host that reports the VM running, if any.
* ``adopt``: move the record there (compare-and-set on the dead source) instead of a
  restart.
* ``settle_orphans``: moves whose source is confirmed off (their runner died with it)
  are taken over and ended: succeeded if the destination reports the VM running, else
  failed — without touching the VM record, which failover owns from then on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from fleet.core.hypervisor import DomainState
from fleet.core.lease import Term
from fleet.core.models import Move, MoveState
from fleet.core.settlement import Seen, Sighting, Verdict, settle
from fleet.store import Store
from workers.outcomes import Outcome, commit, end_move
from workers.recovery import move_record

_UNDER_WAY = frozenset({MoveState.MIGRATING.value, MoveState.VERIFYING.value})
"""Move states in which the guest may already have switched over to the destination."""

Reports = Mapping[str, Mapping[str, str]]
"""Fresh heartbeat reports only: host -> {domain name: domain state}."""


def running_elsewhere(reports: Reports, vm: str, source: str) -> str | None:
    """A live host other than ``source`` whose heartbeat reports ``vm`` running."""
    return next((host for host, domains in sorted(reports.items())
                 if host != source and domains.get(vm) == "running"), None)


def adopt(store: Store, name: str, source: str, host: str, term: Term | None = None) -> bool:
    """Record ``name`` running on ``host`` if it is still recorded on ``source`` (under
    the monitor's ``term`` if given, see ``move_record``)."""
    return move_record(store, name, source, host, term) is not None


def settle_orphans(store: Store, dead: Iterable[str], reports: Reports, runner: str,
                   lease_s: float) -> list[Outcome]:
    """End every move whose source is in ``dead`` (confirmed off): pending ones fail at
    once (a runner that claims one later finds it ended), active ones — whose runner
    died with the host, whatever its lease says — are settled by what the destination
    reports; returns what ended."""
    dead = frozenset(dead)
    settled = fail_pending(store, dead)
    for move in store.active_moves():
        if move.source not in dead:
            continue
        if move.destination and move.destination not in reports:
            continue  # settled once the destination's fresh report says where the VM is
        taken = store.take_over(move.id, runner, lease_s, force=True)  # its runner is off
        if taken is not None:
            settled.append(_settle_orphan(store, taken, reports))
    return settled


def _settle_orphan(store: Store, move: Move, reports: Reports) -> Outcome:
    """Settle a move whose source is off by what its destination reports."""
    there = reports.get(move.destination, {}).get(move.vm) if move.destination else None
    seen = Sighting(Seen.OFF, DomainState(there) if there else Seen.ABSENT, final=True)
    verdict = settle(move.source, move.destination, seen)
    if verdict.verdict is Verdict.MOVED and move.state in _UNDER_WAY:
        return commit(store, move, verdict.host)
    why = (f"source host {move.source} went down during the move; {move.vm} is"
           f" {there or 'not reported'} on {move.destination or 'no destination'}")
    return end_move(store, move, MoveState.FAILED.value, why)


def fail_pending(store: Store, dead: frozenset[str]) -> list[Outcome]:
    """Fail the pending (dispatched or waiting) moves of the confirmed-off hosts ``dead``:
    their message may still reach the host's agent once it is back, long after failover
    decided where its VMs run."""
    ended = []
    for job in store.list_jobs(limit=1000):
        if job.terminal:
            continue
        for move in store.job_moves(job):
            if move.source not in dead or move.state != MoveState.PENDING.value:
                continue
            why = f"source host {move.source} was fenced before the move began"
            if store.set_move(move.id, MoveState.FAILED.value, error=why) is not None:
                store.release(move.destination, move.id)
                store.release_vm(move.vm, move.id)
                ended.append(Outcome(move.id, MoveState.FAILED.value, why))
    return ended
