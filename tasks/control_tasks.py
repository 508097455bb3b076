"""Tasks of the controller (queue ``fleet.control``): start and advance jobs."""

from __future__ import annotations

from typing import Any

import redis

from fleet.core.models import Job, Move
from tasks.app import app
from tasks.runtime import runtime
from tasks.signed import send
from workers.drain import placement_config
from workers.jobs import JobService


def dispatch(move: Move) -> None:
    """Send a placed move to its source host's agent (the VM and its hosts first: Flower's
    task list shows the start of the arguments)."""
    send("fleet.vm.migrate", {
        "vm": move.vm, "source": move.source, "destination": move.destination,
        "job_id": move.job_id, "move_id": move.id})


def service() -> JobService:
    """The job service of this controller process (drains planned on its kept state)."""
    rt = runtime()
    planner = rt.drain_planner()
    return JobService(rt.store, dispatch, placement_config(rt.settings), planner=planner,
                      placer=planner.place)


def request_advance(job_id: str) -> None:
    """Ask for an advance of ``job_id``; send its message unless one is on its way
    (``Store.want_advance``): a burst of move ends costs the controller one advance."""
    if runtime().store.want_advance(job_id):
        send("fleet.job.advance", {"job_id": job_id})


def _view(job: Job) -> dict[str, Any]:
    return {"job": job.id, "state": job.state}


# Nobody waits for these two: their results are not stored (Flower shows them from events).
@app.task(name="fleet.job.start", autoretry_for=(redis.ConnectionError,), retry_backoff=True,
          ignore_result=True)
def start_job(job_id: str) -> dict[str, Any]:
    """Start job ``job_id``: place its first moves and dispatch them."""
    return _view(service().start(job_id))


@app.task(name="fleet.job.advance", autoretry_for=(redis.ConnectionError,), retry_backoff=True,
          ignore_result=True)
def advance_job(job_id: str) -> dict[str, Any]:
    """Advance job ``job_id`` after a move ended: dispatch more, or finish it."""
    return _view(service().advance(job_id))


@app.task(name="fleet.job.cancel", autoretry_for=(redis.ConnectionError,), retry_backoff=True)
def cancel_job(job_id: str, by: str) -> dict[str, Any]:
    """Cancel job ``job_id``: no new moves; running migrations abort, VMs stay put."""
    return _view(service().cancel(job_id, by))
