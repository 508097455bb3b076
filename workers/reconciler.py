"""The reconciler: settle moves whose runner vanished by asking the hypervisors.

A peer-to-peer migration may still be running inside the source hypervisor after its
caller died; the reconciler follows it to its end (aborting it past its time budget)
and never starts a second migration. Then the VM's real location decides the outcome
(for a VM recorded stopped, where its shut-off definition is), looked at until the
picture settles, and ``fleet.core.settlement`` decides (``workers.sighting``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fleet.core.hypervisor import Hypervisor
from fleet.core.models import Move, VMState
from fleet.core.policy import completion_timeout_s
from fleet.settings import Settings
from fleet.store import Store
from workers.outcomes import MoveFailed, Outcome, conclude, settler
from workers.runner import Locate, policy_config

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
        picture = settler(self.store, move, self.settings, self.sleep).settle(
            source, dest, move.vm, stopped)
        self.store.emit(move.job_id, "move.sighted", move=move.id, vm=move.vm,
                        by="reconciler", verdict=picture.settlement.verdict.value,
                        seen=picture.describe(), looks=picture.looks)
        log.info("reconciled %s: %s", move.vm, picture.settlement.verdict.value)
        how = "is still stopped" if stopped else "still runs"
        return conclude(self.store, move, picture, f"runner vanished; the move did not"
                                                   f" complete; {move.vm} {how} on {move.source}")
