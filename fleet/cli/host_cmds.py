"""``fleet host ...`` and ``fleet capacity``: drains, activation, the N+1 report."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from fleet.cli.common import (
    CancelOpt,
    JsonOpt,
    console,
    fields_table,
    finish_job,
    load_store,
    print_json,
    who,
)
from fleet.core.errors import InvalidInput
from fleet.core.models import HostState
from fleet.core.names import check_name
from fleet.settings import Settings
from fleet.store import Store

host_app = typer.Typer(help="Show, drain, activate and fence hosts.", no_args_is_help=True)


@host_app.command("drain")
def drain(
    hosts: Annotated[list[str], typer.Argument(
        help="Host(s) to drain together; no VM goes to another host of the same drain.",
        metavar="HOST...", show_default=False)],
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until done.")] = False,
    concurrency: Annotated[int | None, typer.Option(
        min=1, max=64, help="Moves at once per host (default: FLEET_DRAIN_CONCURRENCY).",
        metavar="N", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only.")] = False,
    cancel_on_interrupt: CancelOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Put HOSTS in maintenance and move every VM off them, planned together."""
    from workers.drain import fleet_state, placement_config, plan_drain

    if dry_run and (wait or cancel_on_interrupt):
        other = "--wait" if wait else "--cancel-on-interrupt"
        raise InvalidInput(f"--dry-run and {other} exclude each other: a dry run starts"
                           " nothing")
    settings, store = load_store()
    names = list(dict.fromkeys(check_name("host", h) for h in hosts))
    for host in names:
        store.get_host(host)
    n = concurrency or settings.drain_concurrency
    if dry_run:
        plan = plan_drain(fleet_state(store, placement_config(settings)), names, n)
        if as_json:
            print_json(plan.to_dict())
        else:
            _show_plan(plan.to_dict())
        raise typer.Exit(0 if plan.complete else 1)  # an incomplete plan is not a success
    from tasks.submit import submit_drain

    job_id, created = submit_drain(store, names, n, who())
    if not created:
        Console(stderr=True).print(f"[yellow]{', '.join(names)} already draining in job "
                                   f"{job_id}[/]")
    if wait or cancel_on_interrupt:
        return finish_job(store, job_id, as_json, cancel_on_interrupt)
    if as_json:
        return print_json({"job": job_id, "created": created})
    typer.echo(job_id)
    return None


def _show_plan(plan: dict[str, object]) -> None:
    moves = plan["moves"]
    assert isinstance(moves, list)
    for move in moves:
        console.print(f"wave {move['wave']}: {move['vm']} {move['source']} → "
                      f"{move['destination']} ({move['memory_mib']} MiB)")
    unplaced = plan["unplaced"]
    assert isinstance(unplaced, list)
    for item in unplaced:
        console.print(f"[red]{item['vm']} fits nowhere: {'; '.join(item['reasons'])}[/]")
    console.print(f"strategy {plan['strategy']}, {len(moves)} moves, "
                  f"{len(unplaced)} unplaced")


@host_app.command("show")
def show(host: str, as_json: JsonOpt = False) -> None:
    """HOST in full: capacity, heartbeat, failover health and why, fence agent, VMs."""
    import time

    from fleet.cli.views import host_detail, host_fields
    from workers.fencing import published_kind

    _, store = load_store()
    check_name("host", host)
    fence = published_kind(host, store.failover.fence_config())
    detail = host_detail(store, host, fence, time.time())
    if as_json:
        return print_json(detail)
    fields_table(f"host {host}", host_fields(detail, time.time()))
    return None


@host_app.command("activate")
def activate(
    host: str,
    return_vms: Annotated[bool, typer.Option("--return", help="Migrate back what the last"
                                             " drain moved away.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="With --return: show progress until"
                                       " the VMs are back.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Put HOST back to active; with --return, bring its VMs back."""
    from workers.drain import running_drain

    settings, store = load_store()
    current = store.get_host(check_name("host", host))
    if running_drain(store, host) is not None:
        raise InvalidInput(f"host {host} is still draining; cancel that job first")
    if current.state in FAILOVER_DONE:
        tell_monitor(settings, store, {"type": "activate", "host": host, "by": who()})
        typer.echo(f"{host}: activation sent to the monitor")
        return None
    if current.state not in (HostState.ACTIVE.value, HostState.MAINTENANCE.value):
        raise InvalidInput(f"host {host} is {current.state}; wait for failover to settle")
    store.set_host_state(host, HostState.ACTIVE.value)
    job_id = None
    if return_vms:
        from tasks.submit import submit_return

        job_id = submit_return(store, host, settings.drain_concurrency, who())
    if wait and job_id:
        return finish_job(store, job_id, as_json)
    if as_json:
        return print_json({"host": host, "state": "active", "return_job": job_id})
    typer.echo(job_id or f"{host} active")
    return None


FAILOVER_DONE = ("fenced", "recovering", "recovered")


@host_app.command("confirm-down")
def confirm_down(host: str) -> None:
    """After checking by hand that HOST is off: let failover restart its VMs."""
    settings, store = load_store()
    current = store.get_host(check_name("host", host))
    if current.state not in ("down", "fence_failed", "fencing", "suspect"):
        raise InvalidInput(f"host {host} is {current.state}; confirm-down is for hosts that"
                           " failover could not fence")
    tell_monitor(settings, store, {"type": "confirm", "host": host, "by": who()})
    store.emit(store.failover.job(host) or "", "host.confirm_down", host=host, by=who())
    typer.echo(f"{host}: confirmation sent to the monitor")


def tell_monitor(settings: Settings, store: Store, command: dict[str, str]) -> None:
    """Put an operator's command in the monitor's inbox, signed by the control plane
    (the monitor ignores unsigned ones); nothing is written when it cannot be signed."""
    from workers.signing import CONTROL, Keyring, seal_event

    ring = Keyring.load(settings.keys_dir, CONTROL, settings.signature_ttl_s)
    store.failover.push(seal_event(ring, command))


@host_app.command("fence")
def fence(host: str) -> None:
    """Fence HOST now (power off, confirmed), whatever its heartbeats say."""
    settings, store = load_store()
    current = store.get_host(check_name("host", host))
    if current.state in FAILOVER_DONE:
        raise InvalidInput(f"host {host} is already {current.state}")
    tell_monitor(settings, store, {"type": "fence_now", "host": host, "by": who()})
    store.emit("", "host.fence_requested", host=host, by=who())
    typer.echo(f"{host}: fence request sent to the monitor")


def capacity(as_json: JsonOpt = False,
             thorough: Annotated[bool, typer.Option(help="Try every packing strategy.")]
             = False) -> None:
    """N+1: could each host's VMs be re-placed on the others if it failed?"""
    from fleet.core.capacity import n_plus_one
    from workers.drain import fleet_state, placement_config

    settings, store = load_store()
    report = n_plus_one(fleet_state(store, placement_config(settings)), thorough=thorough)
    if as_json:
        return print_json(report.to_dict())
    for verdict in report.hosts:
        stranded = ", ".join(verdict.stranded)
        mark = "[green]ok[/]" if verdict.ok else f"[red]stranded: {stranded}[/]"
        console.print(f"{verdict.host} ({verdict.state}, {verdict.vms} VMs): {mark}")
    failing = ", ".join(report.failing)
    console.print("N+1 holds" if report.ok else f"[red]N+1 fails for {failing}[/]")
    return None
