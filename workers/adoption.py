"""What a dead host left half-done, settled from the other hosts' heartbeats.

A migration's destination resumes the guest before the source commits anything. If the
source host loses power in between, the VM already runs on the destination while fleet
still records it on the dead source, and the move's runner died with the host. Failover
must not start a second copy: the monitor asks the live hosts' heartbeat reports first.

* ``running_elsewhere``: the live host that reports the VM running, if any.
* ``adopt``: move the record there (compare-and-set on the dead source) instead of a
  restart.
* ``settle_orphans``: moves whose source is confirmed off and whose lease lapsed are
  taken over and ended: succeeded if the destination reports the VM running, else
  failed — without touching the VM record, which failover owns from then on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from fleet.core.models import MoveState
from fleet.store import Store
from workers.recovery import move_record
from workers.runner import Outcome, commit, end_move

_UNDER_WAY = frozenset({MoveState.MIGRATING.value, MoveState.VERIFYING.value})
"""Move states in which the guest may already have switched over to the destination."""

Reports = Mapping[str, Mapping[str, str]]
"""Fresh heartbeat reports only: host -> {domain name: domain state}."""


def running_elsewhere(reports: Reports, vm: str, source: str) -> str | None:
    """A live host other than ``source`` whose heartbeat reports ``vm`` running."""
    return next((host for host, domains in sorted(reports.items())
                 if host != source and domains.get(vm) == "running"), None)


def adopt(store: Store, name: str, source: str, host: str) -> bool:
    """Record ``name`` running on ``host`` if it is still recorded on ``source``."""
    return move_record(store, name, source, host) is not None


def settle_orphans(store: Store, dead: Iterable[str], reports: Reports, runner: str,
                   lease_s: float) -> list[Outcome]:
    """End every active move whose source is in ``dead`` (confirmed off) and whose
    runner's lease lapsed; returns what was settled."""
    dead = frozenset(dead)
    settled = []
    for move in store.active_moves():
        if move.source not in dead:
            continue
        taken = store.take_over(move.id, runner, lease_s)
        if taken is None:
            continue
        there = reports.get(move.destination, {}).get(move.vm)
        if taken.state in _UNDER_WAY and move.destination and there == "running":
            settled.append(commit(store, taken, move.destination))
        else:
            why = (f"source host {move.source} went down during the move; {move.vm} is"
                   f" {there or 'not reported'} on {move.destination or 'no destination'}")
            settled.append(end_move(store, taken, MoveState.FAILED.value, why))
    return settled
