"""The reconciler: settle moves whose runner vanished by asking the hypervisors.

A peer-to-peer migration may still be running inside the source hypervisor after its
caller died; the reconciler follows it to its end (aborting it past its time budget)
and never starts a second migration. Then the VM's real location decides the outcome
(for a VM recorded stopped, where its shut-off definition is), looked at until the
picture settles (``workers.sighting``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fleet.core.hypervisor import Hypervisor
from fleet.core.models import Move, VMState
from fleet.core.policy import completion_timeout_s
from fleet.core.whereabouts import Where
from fleet.settings import Settings
from fleet.store import Store
from workers.runner import (
    Locate,
    MoveFailed,
    Outcome,
    commit,
    lookout,
    policy_config,
    settle_failed,
)

log = logging.getLogger(__name__)


@dataclass
class Reconciler:
    """Settles stale moves whose source is one of ``hypervisors``."""

    store: Store
    hypervisors: dict[str, Hypervisor]
    locate: Locate
    settings: Settings
    runner_id: str
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time

    def stale(self) -> Iterable[Move]:
        now = self.clock()
        for move in self.store.active_moves():
            if move.source in self.hypervisors and move.lease_until < now:
                yield move

    def sweep(self) -> list[Outcome]:
        """Settle every stale move of our hosts; returns what was settled."""
        return [o for o in (self.settle(m.id) for m in self.stale()) if o is not None]

    def settle(self, move_id: str) -> Outcome | None:
        move = self.store.take_over(move_id, self.runner_id, self.settings.move_lease_s)
        if move is None:
            return None
        source = self.hypervisors[move.source]
        try:
            self._follow(move, source)
            return self._decide(move, source)
        except MoveFailed as exc:  # another reconciler took the move meanwhile
            log.warning("gave up settling move %s: %s", move_id, exc)
            return None

    def _follow(self, move: Move, source: Hypervisor) -> None:
        """Wait for a migration still running in the hypervisor; abort it past budget."""
        vm = self.store.get_vm(move.vm)
        deadline = self.clock() + completion_timeout_s(vm.memory_mib,
                                                       policy_config(self.settings, vm.policy))
        while source.job_stats(move.vm) is not None:
            if self.clock() > deadline:
                log.warning("aborting orphaned migration of %s", move.vm)
                source.abort_job(move.vm)
            self.store.advance_move(move.id, move.token, lease_s=self.settings.move_lease_s)
            self.sleep(self.settings.poll_interval_s)

    def _decide(self, move: Move, source: Hypervisor) -> Outcome:
        dest_host = self.store.find_host(move.destination) if move.destination else None
        dest = self.locate(dest_host) if dest_host else None
        stopped = self.store.get_vm(move.vm).state == VMState.STOPPED.value
        state, how = ("stopped", "is still stopped") if stopped else ("running", "still runs")
        seen = lookout(self.store, move, self.settings, self.sleep).sight(
            source, dest, move.vm, stopped)
        self.store.emit(move.job_id, "move.sighted", move=move.id, vm=move.vm,
                        where=seen.where.value, seen=seen.describe(), looks=seen.looks)
        if seen.where is Where.MOVED:
            log.info("reconciled %s: %s on %s", move.vm, state, move.destination)
            return commit(self.store, move, move.destination, state)
        if seen.where is Where.STAYED:
            if dest and seen.there:
                dest.destroy(move.vm)  # an incoming domain (or definition) left behind
            reason = (f"runner vanished; the move did not complete; {move.vm} {how}"
                      f" on {move.source}")
            return settle_failed(self.store, move, reason, vm_state=state)
        reason = f"runner vanished; VM {move.vm} needs an operator ({seen.describe()})"
        return settle_failed(self.store, move, reason, vm_state="down")
