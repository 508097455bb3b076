"""What every ``fleet`` sub-command shares: the console, JSON output, the store."""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fleet.core.errors import InvalidInput
from fleet.settings import Settings, load_settings, unknown_variables
from fleet.store import Store

console = Console()
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def checked_settings() -> Settings:
    """Settings, with every fence agent of ``FLEET_FENCE`` built once (an unknown kind or
    a missing parameter is a one-line error, exit 2) and mistyped ``FLEET_*`` variables
    named on stderr."""
    settings = load_settings()
    if settings.fence:  # the agents are imported only when there are some to check
        from workers.fencing import check_config

        check_config(settings.fence)
    for name, guess in unknown_variables(os.environ):
        hint = f" (did you mean {guess}?)" if guess else ""
        sys.stderr.write(f"fleet: warning: {name} is not a fleet setting{hint}\n")
    return settings


def load_store() -> tuple[Settings, Store]:
    settings = checked_settings()
    return settings, Store.connect(settings.redis_url, settings.prefix)


def who() -> str:
    """Who is asking, for the audit trail."""
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    """Print dict rows as a table of ``columns``."""
    rows_table(title, columns, [[row.get(c) for c in columns] for row in rows])


def rows_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print list rows as a table."""
    out = Table(title=title)
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*(_cell(v) for v in row))
    console.print(out)


def _cell(value: Any) -> str:
    from fleet.cli.human import human_value

    return human_value(value)


def fields_table(title: str, record: dict[str, Any]) -> None:
    """Print one record as a two-column table of its fields."""
    rows_table(title, ["field", "value"], [[k, v] for k, v in record.items()])


def finish_job(store: Store, job_id: str, as_json: bool, cancel_on_interrupt: bool = False,
               ) -> None:
    """Watch a job to its end; exit 1 unless it succeeded. Ctrl-C leaves the job running
    and says how to follow or cancel it, or with ``cancel_on_interrupt`` cancels it (its
    running migrations abort, VMs stay where they run) and waits for it to end."""
    from fleet.cli.views import job_detail
    from fleet.cli.watch import summary_table, watch_job

    quiet = Console(file=sys.stderr) if as_json else console
    quiet.print(f"job {job_id}")
    try:
        job = watch_job(store, job_id, quiet)
    except KeyboardInterrupt:
        if cancel_on_interrupt:
            _cancel_after_interrupt(store, job_id)
        sys.stderr.write(f"fleet: interrupted: job {job_id} goes on; `fleet job watch {job_id}`"
                         f" follows it, `fleet job cancel {job_id}` stops it\n")
        raise typer.Exit(130) from None
    if as_json:
        print_json(job_detail(store, job))
    else:
        console.print(summary_table(store, job))
    if job.state != "succeeded":
        raise typer.Exit(1)


def _cancel_after_interrupt(store: Store, job_id: str, wait_s: float = 60.0) -> None:
    """Cancel ``job_id`` and wait up to ``wait_s`` for it to end; a second Ctrl-C stops
    waiting (the cancel stands). Exits 130 once the job ended."""
    import time

    from tasks.submit import submit_cancel

    sys.stderr.write(f"fleet: interrupted: cancelling job {job_id}; running migrations"
                     " abort and their VMs stay where they run\n")
    try:
        submit_cancel(store, job_id, who())
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            job = store.get_job(job_id)
            if job.terminal:
                sys.stderr.write(f"fleet: job {job_id} {job.state}\n")
                raise typer.Exit(130)
            time.sleep(0.2)
    except (KeyboardInterrupt, InvalidInput):
        pass
    sys.stderr.write(f"fleet: job {job_id} is being cancelled; `fleet job watch {job_id}`"
                     " follows it\n")
    raise typer.Exit(130)


CancelOpt = Annotated[bool, typer.Option(
    "--cancel-on-interrupt", help="Wait, and on Ctrl-C cancel the job (running migrations"
    " abort) instead of leaving it running.")]


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(flag: str, text: str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``12h`` or ``7d``; ``InvalidInput`` else."""
    unit = text[-1:] if text[-1:] in _UNITS else "s"
    number = text[:-1] if text[-1:] in _UNITS else text
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        raise InvalidInput(f"{flag} must be a duration like 90s, 30m, 12h or 7d, not {text!r}"
                           ) from None
    if not 0 <= value <= 10 * 365 * 86400:  # also refuses inf and nan
        raise InvalidInput(f"{flag} must be between 0 and ten years, not {text!r}")
    return value


def check_choice(flag: str, value: str, choices: list[str]) -> str:
    """``value`` if it is one of ``choices``; ``InvalidInput`` naming them else."""
    if value not in choices:
        raise InvalidInput(f"{flag} must be one of {', '.join(choices)}, not {value!r}")
    return value
