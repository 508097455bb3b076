"""Tasks that run on a host's agent (queue ``host.<source>``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import redis
from celery import Task

from fleet.core.models import Move, Progress
from tasks.app import app
from tasks.control_tasks import request_advance
from tasks.runtime import runtime
from tasks.signed import WorkRefused
from workers.reconciler import Reconciler
from workers.runner import MigrationRunner
from workers.vmpower import PowerResult, start_in_place, start_vm, stop_vm


class MoveNotDone(Exception):
    """The migration task ended its move failed or cancelled; the message says why."""


def _publisher(task: Task) -> Any:
    def publish(move: Move, progress: Progress) -> None:
        meta = {"move": move.id, "vm": move.vm, "source": move.source,
                "destination": move.destination, **progress.to_dict()}
        task.update_state(state="PROGRESS", meta=meta)
        task.send_event("task-progress", result=progress.summary(), **meta)

    return publish


@app.task(name="fleet.vm.migrate", bind=True, autoretry_for=(redis.ConnectionError,),
          throws=(MoveNotDone, WorkRefused),
          retry_backoff=True, max_retries=5)
def migrate_vm(self: Task, move_id: str, vm: str, source: str, destination: str,
               job_id: str) -> dict[str, str]:
    """Live-migrate ``vm`` from ``source`` to ``destination`` as move ``move_id``."""
    rt = runtime()
    runner = MigrationRunner(rt.store, rt.hypervisor(source), rt.settings, rt.locate,
                             rt.runner_id(source), publish=_publisher(self),
                             task_id=str(self.request.id or ""))
    outcome = runner.run(move_id)
    request_advance(job_id)
    if outcome.not_done:  # Flower and the result backend show FAILURE with the reason
        reason = f"{vm} {source} -> {destination} {outcome.state}: {outcome.detail}"
        self.send_event("task-progress", result=reason)  # not the last progress sample
        raise MoveNotDone(reason)
    return asdict(outcome)


@app.task(name="fleet.move.reconcile", bind=True)
def reconcile_move(self: Task, move_id: str, vm: str, source: str, job_id: str,
                   ) -> dict[str, str] | None:
    """Settle move ``move_id`` of ``vm`` if its runner vanished."""
    rt = runtime()
    reconciler = Reconciler(rt.store, {source: rt.hypervisor(source)}, rt.locate, rt.settings,
                            rt.runner_id(source))
    outcome = reconciler.settle(move_id)
    if outcome is not None:
        request_advance(job_id)
    return None if outcome is None else asdict(outcome)


def _power_done(result: PowerResult, kind: str, by: str, **fields: Any) -> dict[str, Any]:
    """Audit a power action (event ``vm.<kind>`` or ``vm.<kind>_failed``); its result."""
    rt = runtime()
    rt.store.emit("", f"vm.{kind}" if result.ok else f"vm.{kind}_failed", vm=result.vm,
                  host=result.host, by=by, detail=result.detail, **fields)
    return asdict(result)


@app.task(name="fleet.vm.start_in_place", autoretry_for=(redis.ConnectionError,),
          retry_backoff=True)
def start_vm_in_place(vm: str, source: str, attempt: int) -> dict[str, Any]:
    """Start the stopped HA VM ``vm`` again on its own host ``source`` (the VM guard)."""
    rt = runtime()
    result = start_in_place(rt.store, rt.hypervisor(source), vm, attempt)
    rt.store.journal.count("vm_restarts", outcome="started" if result.ok else "failed")
    return _power_done(result, "started_in_place", "vm-guard", attempt=attempt)


@app.task(name="fleet.vm.stop", autoretry_for=(redis.ConnectionError,), retry_backoff=True)
def stop_vm_on_host(vm: str, source: str, timeout_s: float, by: str) -> dict[str, Any]:
    """Stop ``vm`` on its host ``source`` for ``by``: shut down, power off after
    ``timeout_s``; the definition stays."""
    rt = runtime()
    return _power_done(stop_vm(rt.store, rt.hypervisor(source), vm, timeout_s), "stopped", by)


@app.task(name="fleet.vm.start", autoretry_for=(redis.ConnectionError,), retry_backoff=True)
def start_vm_on_host(vm: str, source: str, by: str) -> dict[str, Any]:
    """Start the stopped VM ``vm`` on its host ``source`` for ``by``."""
    rt = runtime()
    return _power_done(start_vm(rt.store, rt.hypervisor(source), vm), "started", by)
