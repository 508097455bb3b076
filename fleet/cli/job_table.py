"""A job's summary for people: a header, then its moves or its failover outcomes.

Everything shown comes from ``fleet.cli.job_views.job_detail`` (the ``--json`` form), so
the JSON is always a superset of the table.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table

from fleet.cli.human import human_bytes, human_clock, human_duration, human_time
from fleet.core.models import JobState, MoveState

MOVE_COLUMNS = ("vm", "from", "to", "state", "started", "finished", "duration", "moved",
                "downtime", "progress", "error")
OUTCOME_COLUMNS = ("vm", "outcome", "host")


def render_job(detail: dict[str, Any]) -> Group:
    """The header; a failover job's outcome table; the moves table (if any moves, or
    if the job is not a failover)."""
    parts: list[Table] = [header(detail)]
    outcomes = detail.get("outcomes")
    if outcomes is not None:
        parts.append(outcome_table(detail["id"], outcomes))
    if detail["moves"] or outcomes is None:
        parts.append(moves_table(detail))
    return Group(*parts)


def header(detail: dict[str, Any]) -> Table:
    out = Table.grid(padding=(0, 2))
    out.add_column(style="bold")
    out.add_column()
    for name, value in header_rows(detail):
        out.add_row(name, value)
    return out


def header_rows(detail: dict[str, Any]) -> list[tuple[str, str]]:
    """The job's fields as (name, text): times in UTC to the second, the duration so far
    while it runs."""
    state = detail["state"]
    if detail.get("cancel_requested") and state in (JobState.PENDING, JobState.RUNNING):
        state += " (cancel requested)"
    took = detail.get("duration_s")
    duration = "" if took is None else human_duration(took)
    if duration and not detail.get("finished_at"):
        duration += " so far"
    rows = [("job", detail["id"]), ("kind", detail["kind"]), ("state", state),
            ("target", detail.get("target", "")),
            ("requested by", detail.get("requested_by", "")),
            ("created", human_time(detail.get("created_at", 0.0))),
            ("started", human_time(detail.get("started_at", 0.0))),
            ("finished", human_time(detail.get("finished_at", 0.0))),
            ("duration", duration)]
    if detail.get("error"):
        rows.append(("error", str(detail["error"])))
    return rows


def moves_table(detail: dict[str, Any]) -> Table:
    out = Table(title=f"moves of job {detail['id']}")
    for column in MOVE_COLUMNS:
        out.add_column(column)
    day = float(detail.get("created_at", 0.0))
    for move in detail["moves"]:
        out.add_row(*move_cells(move, day))
    return out


def move_cells(move: dict[str, Any], day: float) -> list[str]:
    """One move as table cells, in ``MOVE_COLUMNS`` order; times of ``day`` (the job's
    creation) without their date."""
    took = move.get("duration_s")
    moved = move.get("transferred_mib")
    downtime = move.get("downtime_ms")
    percent = move.get("progress", {}).get("percent")
    return [move["vm"], move["source"], destination_text(move), move["state"],
            human_clock(move.get("started_at", 0.0), day),
            human_clock(move.get("finished_at", 0.0), day),
            "" if took is None else human_duration(took),
            "" if moved is None else human_bytes(moved),
            "" if downtime is None else f"{downtime:.0f} ms",
            "" if percent is None else f"{percent:.0f} %",
            move.get("error", "")]


def destination_text(move: dict[str, Any]) -> str:
    """Where a move went or goes, and the hosts tried before: ``h3 (re-placed; tried
    h2)``, ``re-placing (tried h2)`` while it waits, ``none (tried h2)`` if it ended
    without one."""
    dest, tried = move.get("to", ""), ", ".join(move.get("excluded", []))
    if dest:
        return f"{dest} (re-placed; tried {tried})" if tried else dest
    waiting = move["state"] not in (MoveState.SUCCEEDED, MoveState.FAILED,
                                    MoveState.CANCELLED)
    word = ("re-placing" if tried else "to be placed") if waiting else "none"
    return f"{word} (tried {tried})" if tried else word


def outcome_table(job_id: str, outcomes: list[dict[str, Any]]) -> Table:
    out = Table(title=f"VMs of failover job {job_id}")
    for column in OUTCOME_COLUMNS:
        out.add_column(column)
    for row in outcomes:
        out.add_row(*(str(row[c]) for c in OUTCOME_COLUMNS))
    if not outcomes:
        out.add_row("(none)", "no VM outcome recorded", "")
    return out
