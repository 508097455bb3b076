"""``fleet vm stop`` and ``fleet vm start``: a VM's power, asked of its host's agent.

Stopping records the intent first, so the VM guard never starts an HA VM an operator
stopped; the definition stays on the host and ``start`` boots it there again.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from fleet.cli.common import JsonOpt, load_store, print_json, who
from fleet.core.errors import InvalidInput

ANSWER_MARGIN_S = 30.0
DEFAULT_TIMEOUT_S = 60.0
DAY_S = 86_400


def vm_stop(
    name: str,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", min=0, max=DAY_S,
        help="Seconds the guest gets to shut down before power-off [default: 60].",
    )] = None,
    force: Annotated[bool, typer.Option("--force", help="Power off at once.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Stop a VM on its host (guest shutdown, then power-off); it stays defined there."""
    from tasks.submit import request_power

    if force and timeout is not None:
        raise InvalidInput("--timeout and --force exclude each other: choose one")
    _, store = load_store()
    grace = 0.0 if force else (DEFAULT_TIMEOUT_S if timeout is None else timeout)
    _report(request_power(store, name, "stop", who(), grace + ANSWER_MARGIN_S, grace), as_json)


def vm_start(name: str, as_json: JsonOpt = False) -> None:
    """Start a stopped VM on its host, from its stored definition."""
    from tasks.submit import request_power

    _, store = load_store()
    _report(request_power(store, name, "start", who(), ANSWER_MARGIN_S), as_json)


def _report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(result)
    else:
        typer.echo(f"{result['vm']}: {result['detail']}")
    if not result["ok"]:
        raise typer.Exit(1)
