"""``fleet jobs`` and ``fleet job show|cancel|watch``: what jobs did and are doing."""

from __future__ import annotations

from typing import Annotated

import typer

from fleet.cli.common import (
    JsonOpt,
    check_choice,
    console,
    finish_job,
    load_store,
    parse_duration,
    print_json,
    table,
    who,
)
from fleet.core.models import JobState
from fleet.core.names import check_job_id

job_app = typer.Typer(help="Inspect and watch jobs.", no_args_is_help=True)
JobArg = Annotated[str, typer.Argument(help="The job's id, as printed when it was submitted.",
                                       show_default=False)]


def jobs(
    state: Annotated[list[str] | None, typer.Option(
        "--state", help="Only jobs in this state (repeatable): pending, running, succeeded,"
        " failed, cancelled (default: every state).")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only jobs created this long ago or later: 90s, 30m, 12h, 7d"
        " (default: any age).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Rows at most.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List jobs, newest first, with their age; says how many more match."""
    import time

    from fleet.cli.views import human_age, job_row

    states = [check_choice("--state", s, [j.value for j in JobState]) for s in state or []]
    cutoff = time.time() - parse_duration("--since", since) if since else 0.0
    found, more = load_store()[1].find_jobs(cutoff, states, limit)
    rows = [job_row(j) for j in found]
    if as_json:
        return print_json(rows)
    now = time.time()
    shown = [{**r, "age": human_age(now - r["created_at"])} for r in rows]
    table(shown, ["id", "kind", "state", "age", "target", "requested_by", "error"], "jobs")
    if more:
        console.print(f"{more} more job(s) match; raise --limit to see them")
    return None


@job_app.command("show")
def job_show(job_id: JobArg, as_json: JsonOpt = False) -> None:
    """A job in full: kind, state, who asked, times; each move with where it went, data
    moved, downtime and errors; a failover job's outcome per VM."""
    from fleet.cli.views import job_detail
    from fleet.cli.watch import summary_table

    _, store = load_store()
    job = store.get_job(check_job_id(job_id))
    if as_json:
        return print_json(job_detail(store, job))
    console.print(summary_table(store, job))
    return None


@job_app.command("cancel")
def job_cancel(job_id: JobArg) -> None:
    """Cancel a job: no new moves start; running migrations abort, VMs stay put."""
    from tasks.submit import submit_cancel

    _, store = load_store()
    submit_cancel(store, check_job_id(job_id), who())
    typer.echo(f"cancelling {job_id}")


@job_app.command("watch")
def job_watch(job_id: JobArg, as_json: JsonOpt = False) -> None:
    """Live progress of a job until it ends; exit 1 if it failed."""
    _, store = load_store()
    store.get_job(check_job_id(job_id))
    finish_job(store, job_id, as_json)
