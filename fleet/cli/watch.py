"""Live rendering of a job: a progress bar per move, then a summary table."""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from fleet.core.models import Job, Move, MoveState
from fleet.store import Store

_COLUMNS = (
    TextColumn("[bold]{task.description}"),
    BarColumn(),
    TextColumn("{task.percentage:>5.1f}%"),
    TextColumn("{task.fields[detail]}"),
)


def _detail(move: Move) -> str:
    p = move.progress
    if move.terminal:
        return move.state + (f": {move.error}" if move.error else "")
    if not p:
        return move.state
    eta = p.get("eta_s", 0.0)
    eta_text = f"{eta:.1f}s" if eta < 1e5 else "never"
    return (f"{p.get('mib_s', 0):.0f} MiB/s  it {p.get('iteration', 0)}  "
            f"{p.get('remaining_mib', 0):.0f} MiB left  ETA {eta_text}")


def _percent(move: Move) -> float:
    if move.state == MoveState.SUCCEEDED.value:
        return 100.0
    return float(move.progress.get("percent", 0.0))


def watch_job(store: Store, job_id: str, console: Console, interval_s: float = 0.25,
              timeout_s: float = 3600.0) -> Job:
    """Render the job until it ends; returns the final job record."""
    bars: dict[str, TaskID] = {}
    deadline = time.monotonic() + timeout_s
    cursor = "-"
    with Progress(*_COLUMNS, console=console, transient=False) as progress:
        while True:
            job = store.get_job(job_id)
            for move in store.job_moves(job):
                label = f"{move.vm} {move.source}→{move.destination or '?'}"
                if move.id not in bars:
                    bars[move.id] = progress.add_task(label, total=100, detail="")
                progress.update(bars[move.id], description=label, completed=_percent(move),
                                detail=_detail(move))
            if job.terminal or time.monotonic() > deadline:
                return job
            cursor = _wait_for_news(store, job_id, cursor, interval_s)


def _wait_for_news(store: Store, job_id: str, cursor: str, interval_s: float) -> str:
    """Block until the job's next event or ``interval_s``; returns the newest event id."""
    started = time.monotonic()
    found = store.events(job_id, after=cursor, block_ms=max(1, int(interval_s * 1000)))
    if found:
        return found[-1][0]
    time.sleep(max(0.0, interval_s - (time.monotonic() - started)))
    return cursor


def summary_table(store: Store, job: Job) -> Group:
    """The job's header, then its moves or its failover outcomes (``fleet job show``)."""
    from fleet.cli.job_table import render_job
    from fleet.cli.job_views import job_detail

    return render_job(job_detail(store, job))
