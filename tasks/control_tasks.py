"""Tasks of the controller (queue ``fleet.control``): start and advance jobs."""

from __future__ import annotations

from typing import Any

import redis

from fleet.core.models import Move
from tasks.app import app
from tasks.runtime import runtime
from workers.drain import placement_config
from workers.jobs import JobService


def dispatch(move: Move) -> None:
    """Send a placed move to its source host's agent (the VM and its hosts first: Flower's
    task list shows the start of the arguments)."""
    app.send_task("fleet.vm.migrate", kwargs={
        "vm": move.vm, "source": move.source, "destination": move.destination,
        "job_id": move.job_id, "move_id": move.id})


def service() -> JobService:
    """The job service of this controller process (drains planned on its kept state)."""
    rt = runtime()
    planner = rt.drain_planner()
    return JobService(rt.store, dispatch, placement_config(rt.settings), planner=planner,
                      placer=planner.place)


def _view(job_id: str) -> dict[str, Any]:
    job = runtime().store.get_job(job_id)
    return {"job": job.id, "state": job.state}


@app.task(name="fleet.job.start", autoretry_for=(redis.ConnectionError,), retry_backoff=True)
def start_job(job_id: str) -> dict[str, Any]:
    """Start job ``job_id``: place its first moves and dispatch them."""
    service().start(job_id)
    return _view(job_id)


@app.task(name="fleet.job.advance", autoretry_for=(redis.ConnectionError,), retry_backoff=True)
def advance_job(job_id: str) -> dict[str, Any]:
    """Advance job ``job_id`` after a move ended: dispatch more, or finish it."""
    service().advance(job_id)
    return _view(job_id)


@app.task(name="fleet.job.cancel", autoretry_for=(redis.ConnectionError,), retry_backoff=True)
def cancel_job(job_id: str, by: str) -> dict[str, Any]:
    """Cancel job ``job_id``: no new moves; running migrations abort, VMs stay put."""
    service().cancel(job_id, by)
    return _view(job_id)
