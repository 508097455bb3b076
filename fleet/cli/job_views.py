"""A job in full for ``--json`` and for its summary table: moves, re-placements, failover
outcomes.

The JSON keeps every stored field and adds what the table derives from them (``to``,
``duration_s``, ``transferred_mib``, ``downtime_ms``, a failover job's ``outcomes``), so
it is always a superset of what the table shows.
"""

from __future__ import annotations

import re
import time
from typing import Any

from fleet.core.models import Job, JobKind, Move, MoveState
from fleet.store import Store


def job_row(job: Job) -> dict[str, Any]:
    row = job.to_dict()
    row.pop("moves", None)
    return row


def move_row(move: Move) -> dict[str, Any]:
    row = move.to_dict()
    row.pop("token", None)
    return row


def job_detail(store: Store, job: Job, now: float | None = None) -> dict[str, Any]:
    """The job's record, its moves (see ``move_view``) and, for a failover job, one
    outcome per VM (see ``failover_outcomes``)."""
    now = time.time() if now is None else now
    detail = {**job_row(job), "duration_s": span(job.started_at or job.created_at,
                                                 job.finished_at, now),
              "moves": [move_view(m, now) for m in store.job_moves(job)]}
    if job.kind == JobKind.FAILOVER.value:
        detail["outcomes"] = failover_outcomes(job)
    return detail


def span(start: float, end: float, now: float) -> float | None:
    """Seconds from ``start`` to ``end`` (to ``now`` while not ended); None if never
    started."""
    if not start:
        return None
    return round(max(0.0, (end or now) - start), 2)


def move_view(move: Move, now: float) -> dict[str, Any]:
    """A move's record with what it came to: a succeeded move reads 100 %; ``to`` is
    where it went or goes (its destination, else the target or plan it keeps after a
    re-placement, else ``""``); data moved and downtime as the runner last saw them."""
    row = move_row(move)
    progress = dict(move.progress)
    if move.state == MoveState.SUCCEEDED.value:
        progress["percent"] = 100.0
        if "remaining_mib" in progress:
            progress["remaining_mib"] = 0.0
    row["progress"] = progress
    row["to"] = shown_destination(move)
    row["duration_s"] = span(move.started_at, move.finished_at, now)
    row["transferred_mib"] = _number(progress.get("processed_mib"))
    row["downtime_ms"] = _number(progress.get("downtime_ms"))
    return row


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def shown_destination(move: Move) -> str:
    """Where the move went or is going: its destination; while it waits to be placed
    again, the operator's target or the plan's choice unless that host was tried."""
    if move.destination:
        return move.destination
    for choice in (move.target, move.planned):
        if choice and choice not in move.excluded:
            return choice
    return ""


def failover_outcomes(job: Job) -> list[dict[str, Any]]:
    """One row per VM of a failover job: ``outcome`` in words, the ``host`` it names
    (else the failed host), and the ``detail`` as recorded."""
    vms = job.summary.get("vms", {})
    rows = []
    for vm, raw in sorted(vms.items()):
        outcome, host = read_outcome(str(raw), job.target)
        rows.append({"vm": vm, "outcome": outcome, "host": host, "detail": str(raw)})
    return rows


_ON_HOST = re.compile(r"\bon ([^\s;,)]+)")


def read_outcome(raw: str, source: str) -> tuple[str, str]:
    """A recorded failover outcome (``running on h3``, ``down: host h1 is off; no host
    with room``, ``failed: start failed: ...``) as a phrase and the host it concerns."""
    named = _ON_HOST.search(raw)
    host = named.group(1) if named else source
    if raw.startswith("running on"):
        how = "found running on" if "found there" in raw else "restarted on"
        return f"{how} {host}", host
    if raw.startswith("restarting on"):
        return f"restarting on {host}", host
    if raw.startswith("recorded on"):
        return f"not restarted: recorded on {host} meanwhile", host
    if raw.startswith("down:"):
        return f"not restarted: {_why_down(raw)}", source
    if raw.startswith("failed:"):
        return _failed(raw.removeprefix("failed:").strip(), source)
    return raw, source


def _why_down(raw: str) -> str:
    if "no host with room" in raw:
        return "no capacity"
    if raw.endswith("not HA"):
        return "not HA"
    return raw.removeprefix("down:").strip()


def _failed(detail: str, source: str) -> tuple[str, str]:
    moved = re.match(r"record moved to ([^\s;]+)", detail)
    if moved:
        return f"not restarted: recorded on {moved.group(1)}", moved.group(1)
    if detail.startswith("held by"):
        return f"not restarted: {detail.split(';', maxsplit=1)[0]}", source
    return f"restart failed: {detail}", source
