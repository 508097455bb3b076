"""Ending a move: commit it, fail it, or conclude it from what both hosts report.

Only the holder of a move's token writes, the VM record before the move, and the VM
record only with a compare-and-set on the host it should still name: a runner that lost
its move, or whose VM someone else moved meanwhile, changes nothing it does not own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fleet.core.errors import FleetError
from fleet.core.models import Move, MoveState, VMState
from fleet.core.settlement import Verdict
from fleet.settings import Settings
from fleet.store import Store
from workers.sighting import Picture, Settler


class MoveFailed(FleetError):
    """The move cannot succeed; the VM stays where it is."""


@dataclass
class Outcome:
    """What became of one run of a move, returned to the task layer."""

    move_id: str
    state: str
    detail: str = ""
    ran: bool = True  # False: another run held (or had finished) the move; nothing done

    @property
    def not_done(self) -> bool:
        """This run did not move the VM: the move failed, was cancelled, or goes back to
        the controller to be placed elsewhere (``pending``)."""
        return self.ran and self.state in (MoveState.FAILED.value, MoveState.CANCELLED.value,
                                           MoveState.PENDING.value)


def settler(store: Store, move: Move, settings: Settings,
            sleep: Callable[[float], None] = time.sleep) -> Settler:
    """How a runner or reconciler holding ``move`` settles it on the hosts; every safety
    step it takes is an event of the move's job."""
    def step(kind: str, host: str, why: str) -> None:
        store.emit(move.job_id, f"vm.copy_{kind}", move=move.id, vm=move.vm, host=host,
                   reason=why)

    return Settler(settings.move_settle_s, settings.poll_interval_s,
                   settings.move_unreachable_s, sleep=sleep, step=step,
                   keep=lambda: _renew(store, move, settings.move_lease_s))


def _renew(store: Store, move: Move, lease_s: float) -> None:
    if store.advance_move(move.id, move.token, lease_s=lease_s) is None:
        raise MoveFailed("the move was taken from this runner while verifying")


def conclude(store: Store, move: Move, picture: Picture, why_stayed: str) -> Outcome:
    """End a held move as the hosts' picture says: moved, stayed, lost or undecided."""
    settled, seen = picture.settlement, picture.sighting
    kept = VMState.STOPPED.value if seen.stopped else VMState.RUNNING.value
    if settled.verdict is Verdict.MOVED:
        return commit(store, move, settled.host, kept)
    if settled.verdict is Verdict.STAYED:
        return settle_failed(store, move, f"{why_stayed} ({picture.describe()})", kept)
    why = ("runs on neither host" if settled.verdict is Verdict.LOST
           else f"needs an operator: {settled.reason}")
    store.emit(move.job_id, "alert", alert="vm_unsettled", subject=move.vm,
               message=f"{move.vm}: {why} ({picture.describe()})")
    return settle_failed(store, move, f"{move.vm} {why} ({picture.describe()})",
                         VMState.DOWN.value)


def _hold(store: Store, move: Move) -> Move | None:
    """``move`` as it is now if still held with its token."""
    return store.advance_move(move.id, move.token)


def commit(store: Store, move: Move, host: str, vm_state: str = "running") -> Outcome:
    """Record that the VM now lives on ``host`` and finish the move as succeeded.

    Only the holder of the move's token writes, and the VM before the move: a runner
    that lost the move changes nothing, and one that dies in between leaves a move the
    reconciler settles again. The record moves only from the move's source (CAS): if
    someone else moved it meanwhile, that is raised as an alert, not overwritten."""
    held = _hold(store, move)
    if held is None:
        return _lost(store, move)
    if held.state == MoveState.CLAIMED.value:  # found moved before its runner said so
        store.advance_move(move.id, move.token, MoveState.MIGRATING.value)
    if store.place_vm(move.vm, host, vm_state, on=move.source) is None:
        current = store.find_vm(move.vm)
        store.emit(move.job_id, "alert", alert="record_conflict", subject=move.vm,
                   message=f"{move.vm} moved to {host} but is recorded on"
                           f" {current.host if current else '?'}")
    done = store.advance_move(move.id, move.token, MoveState.SUCCEEDED.value, error="",
                              progress=completed(held.progress))
    if done is None:
        return _lost(store, move)
    record_finished(store, done, MoveState.SUCCEEDED.value)
    store.release(move.destination, move.id)
    store.release_vm(move.vm, move.id)
    where = "runs on" if vm_state == "running" else f"is {vm_state} on"
    return Outcome(move.id, MoveState.SUCCEEDED.value, f"{move.vm} {where} {host}")


def completed(progress: dict[str, Any]) -> dict[str, Any]:
    """A succeeded move's last progress sample as its final one: 100 %, nothing left;
    the data moved and the downtime stay as last sampled."""
    done = {**progress, "percent": 100.0}
    for key in ("remaining_mib", "eta_s"):
        if key in done:
            done[key] = 0.0
    return done


def settle_failed(store: Store, move: Move, reason: str, vm_state: str | None = None,
                  ) -> Outcome:
    """Fail a move (the VM stays on its source), releasing its claims."""
    return settle_on_source(store, move, MoveState.FAILED.value, reason, vm_state)


def settle_on_source(store: Store, move: Move, state: str, reason: str,
                     vm_state: str | None = None) -> Outcome:
    """End a move whose VM stayed on its source, releasing its claims. The VM record is
    never moved here; its state changes only if ``vm_state`` says what was found and the
    record still names the source (CAS). Like ``commit``, only the holder writes."""
    if _hold(store, move) is None:
        return _lost(store, move)
    if vm_state is not None:
        store.place_vm(move.vm, move.source, vm_state, on=move.source)
    return end_move(store, move, state, reason)


def end_move(store: Store, move: Move, state: str, reason: str) -> Outcome:
    """Finish a held move as ``state`` and release its claims; the VM record is left
    alone (``settle_on_source`` and failover write it)."""
    done = store.advance_move(move.id, move.token, state, error=reason)
    if done is None:
        return _lost(store, move)
    record_finished(store, done, state)
    store.release(move.destination, move.id)
    store.release_vm(move.vm, move.id)
    return Outcome(move.id, state, reason)


def _lost(store: Store, move: Move) -> Outcome:
    """The move is no longer ours (taken over or finished): leave everything as it is."""
    current = store.find_move(move.id)
    return Outcome(move.id, current.state if current else "missing",
                   "not settled here: the move is held by another runner or finished")


def record_finished(store: Store, move: Move, state: str) -> None:
    """Count a finished move for metrics: outcome, duration, data and downtime."""
    journal = store.journal
    journal.count("moves_finished", state=state)
    if state != MoveState.SUCCEEDED.value:
        return
    took = max(0.0, (move.finished_at or store.clock()) - (move.started_at or store.clock()))
    journal.count("migration_seconds_sum", took)
    journal.count("migration_seconds_count")
    journal.count("migrated_mib", float(move.progress.get("processed_mib", 0.0)))
    journal.count("downtime_ms_sum", float(move.progress.get("downtime_ms", 0.0)))
