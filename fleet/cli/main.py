"""The ``fleet`` command: read state, submit jobs, watch them, run the processes.

Exit codes: 0 ok, 1 a job failed or a service is unreachable, 2 bad input (one line on
stderr, never a traceback).
"""

from __future__ import annotations

import sys
from typing import Annotated

import click
import redis
import typer
from rich.console import Console
from typer.exceptions import TyperException

from fleet.cli.common import (
    CancelOpt,
    JsonOpt,
    checked_settings,
    console,
    fields_table,
    finish_job,
    load_store,
    print_json,
    rows_table,
    table,
    who,
)
from fleet.cli.host_cmds import capacity, host_app
from fleet.cli.job_cmds import job_app, jobs
from fleet.cli.keys_cmds import keys_app
from fleet.cli.lab import lab_app
from fleet.cli.plan import plan_app
from fleet.cli.power import vm_start, vm_stop
from fleet.cli.sim_cmds import sim_app
from fleet.core.errors import FleetError, InvalidInput
from fleet.core.names import check_job_id, check_name, parse_name_list
from fleet.settings import load_settings, redacted

app = typer.Typer(help="Orchestrate a KVM fleet: migrate, drain, fail over.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  rich_markup_mode=None,  # plain help: no type noise such as <bool> on flags
                  context_settings={"max_content_width": 120})
vm_app = typer.Typer(help="Act on one VM.", no_args_is_help=True)
app.add_typer(vm_app, name="vm")
vm_app.command("stop")(vm_stop)
vm_app.command("start")(vm_start)
app.add_typer(job_app, name="job")
app.command("jobs")(jobs)

app.add_typer(host_app, name="host")
app.add_typer(lab_app, name="lab")
app.add_typer(plan_app, name="plan")
app.add_typer(sim_app, name="sim")
app.add_typer(keys_app, name="keys")
app.command("capacity")(capacity)


@app.command()
def hosts(as_json: JsonOpt = False) -> None:
    """List hosts with capacity, use and VMs."""
    from fleet.cli.views import host_rows

    rows = host_rows(load_store()[1])
    if as_json:
        return print_json(rows)
    table(rows, ["name", "state", "vcpus", "memory_mib", "used_vcpus", "used_memory_mib",
                  "agent_alive", "vms"], "hosts")
    return None


@app.command()
def vms(as_json: JsonOpt = False) -> None:
    """List VMs and where they run."""
    from fleet.cli.views import shown_state, vm_rows

    rows = vm_rows(load_store()[1])
    if as_json:
        return print_json(rows)
    shown = [{**r, "state": shown_state(r)} for r in rows]
    table(shown, ["name", "host", "state", "vcpus", "memory_mib", "ha", "priority", "group"],
          "vms")
    return None


@vm_app.command("migrate")
def vm_migrate(
    name: str,
    to: Annotated[str | None, typer.Option("--to", help="Destination host.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until done.")] = False,
    cancel_on_interrupt: CancelOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Live-migrate a VM (placed by fleet unless --to is given); prints the job id."""
    from tasks.submit import submit_migration

    _, store = load_store()
    job_id, created = submit_migration(store, name, to, requested_by=who())
    if not created:
        Console(stderr=True).print(f"[yellow]VM {name} is already moving in job {job_id}[/]")
    if wait or cancel_on_interrupt:
        finish_job(store, job_id, as_json, cancel_on_interrupt)
    elif as_json:
        print_json({"job": job_id, "created": created})
    else:
        sys.stdout.write(job_id + "\n")


@vm_app.command("show")
def vm_show(name: str, as_json: JsonOpt = False) -> None:
    """A VM in full: record, policy, the job moving it, and which hosts report it."""
    import time

    from fleet.cli.views import vm_detail, vm_fields

    _, store = load_store()
    detail = vm_detail(store, check_name("VM", name))
    if as_json:
        return print_json(detail)
    fields_table(f"vm {name}", vm_fields(detail, time.time()))
    return None


@vm_app.command("explain")
def vm_explain(name: str, as_json: JsonOpt = False) -> None:
    """Where placement would move a VM now, and why each other host is rejected."""
    from fleet.core.placement import explain
    from fleet.core.planmodel import plan_vm
    from workers.drain import fleet_state, placement_config

    settings, store = load_store()
    vm = store.get_vm(check_name("VM", name))
    state = fleet_state(store, placement_config(settings))
    with state.trial():
        if vm.name in state.placed:
            state.remove(vm.name)
        found = explain(state, plan_vm(vm, vm.rule), exclude=[vm.host])
    if as_json:
        return print_json(found.to_dict())
    console.print(f"{vm.name} would go to {found.host or 'no host'}")
    for host, reasons in sorted(found.rejected.items()):
        console.print(f"  {host}: {'; '.join(reasons)}")
    return None


@vm_app.command("policy")
def vm_policy(
    name: str,
    postcopy: Annotated[bool, typer.Option("--postcopy",
                                           help="Allow post-copy escalation.")] = False,
    no_postcopy: Annotated[bool, typer.Option("--no-postcopy",
                                              help="Never switch to post-copy.")] = False,
    auto_converge: Annotated[bool, typer.Option(
        "--auto-converge", help="Allow auto-converge (throttle the guest's vCPUs).")] = False,
    no_auto_converge: Annotated[bool, typer.Option(
        "--no-auto-converge", help="Never throttle the guest's vCPUs.")] = False,
    timeout_per_gib_s: Annotated[float | None, typer.Option(
        min=1, max=DAY_S, help="Completion budget per GiB of guest memory, seconds.")] = None,
    timeout_min_s: Annotated[float | None, typer.Option(
        min=1, max=7 * DAY_S, help="Smallest completion budget, seconds.")] = None,
    stall_timeout_s: Annotated[float | None, typer.Option(
        min=1, max=DAY_S, help="Abort when data remaining has not fallen this long.")] = None,
    max_downtime_ms: Annotated[int | None, typer.Option(
        min=1, max=3_600_000, help="Largest pause at the switch-over, ms.")] = None,
    bandwidth_mib_s: Annotated[float | None, typer.Option(
        min=0, max=1_048_576, help="Migration bandwidth cap, MiB/s (0: unlimited).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show or set a VM's migration policy overrides: each setting given is set for this
    VM, the others stay as they are (default: unchanged); then every setting is shown
    with its value and whether it is the VM's own or the default."""
    settings, store = load_store()
    vm = store.get_vm(check_name("VM", name))
    given = {"allow_postcopy": _either("postcopy", postcopy, no_postcopy),
             "allow_auto_converge": _either("auto-converge", auto_converge, no_auto_converge),
             "timeout_per_gib_s": timeout_per_gib_s, "timeout_min_s": timeout_min_s,
             "stall_timeout_s": stall_timeout_s, "max_downtime_ms": max_downtime_ms,
             "bandwidth_mib_s": bandwidth_mib_s}
    changes = {k: v for k, v in given.items() if v is not None}
    if changes:
        vm = store.update_vm(vm.name, policy={**vm.policy, **changes})
    if as_json:
        return print_json(vm.policy)
    from fleet.cli.views import policy_rows
    from workers.runner import policy_config

    rows_table(f"migration policy of {vm.name}", ["setting", "value", "from"],
               policy_rows(vm.policy, policy_config(settings)))
    return None


def _either(flag: str, yes: bool, no: bool) -> bool | None:
    """--FLAG: True, --no-FLAG: False, neither: None (unchanged); both is an error."""
    if yes and no:
        raise InvalidInput(f"--{flag} and --no-{flag} exclude each other: choose one")
    return True if yes else (False if no else None)


@app.command()
def events(
    job: Annotated[str | None, typer.Option(
        "--job", help="Only this job's events (default: the audit trail of all jobs).")] = None,
    host: Annotated[str | None, typer.Option(
        "--host", help="Only events naming this host (default: every host).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100000,
                                       help="Show the newest LIMIT events.")] = 200,
    progress: Annotated[bool, typer.Option(help="Include progress samples (--job).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The audit trail: who asked for what, and every state change, with timestamps."""
    from fleet.cli.views import event_rows

    _, store = load_store()
    if job is not None:
        store.get_job(check_job_id(job))
    if host is not None:
        store.get_host(check_name("host", host))
    rows = event_rows(store, job, host, progress)[-limit:]
    if as_json:
        return print_json(rows)
    table(rows, ["time", "kind", "job", "detail"], "events")
    return None


@app.command()
def metrics(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 9464,
    address: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Serve Prometheus metrics at http://ADDRESS:PORT/metrics."""
    from fleet.cli.metrics import serve

    _, store = load_store()
    console.print(f"metrics on http://{address}:{port}/metrics")
    serve(store, address, port)


@app.command()
def agent(
    host: Annotated[str | None, typer.Option("--host", help="The host this agent serves.")]
    = None,
    hosts_: Annotated[str | None, typer.Option("--hosts", help="Several sim hosts: h1,h2")]
    = None,
    driver: Annotated[str, typer.Option("--driver", help="sim or libvirt")] = "sim",
    uri: Annotated[str, typer.Option("--uri", help="libvirt URI")] = "qemu:///system",
    vcpus: Annotated[int | None, typer.Option(
        help="Override the host's vCPUs (default: libvirt's CPU count; sim: 16).")] = None,
    memory_mib: Annotated[int | None, typer.Option(
        help="Override the host's memory in MiB (default: libvirt's; sim: 32768).")] = None,
    address: Annotated[str, typer.Option(
        help="Address other hosts reach this one at (default: none; sim needs none).")] = "",
    migration_uri: Annotated[str, typer.Option(
        help="libvirt URI peers migrate to (default qemu+tls://ADDRESS/system; qemu+tcp"
             " where FLEET_MIGRATION_ALLOW_TCP=true).")] = "",
) -> None:
    """Run the agent of one host (or several sim hosts): its Celery worker and heartbeats."""
    from workers.hypervisors.factory import DRIVERS

    if driver not in DRIVERS:
        raise InvalidInput(f"unknown driver {driver!r}: choose one of {', '.join(DRIVERS)}")
    names = parse_name_list("host", hosts_) if hosts_ else []
    if host:
        names.insert(0, check_name("host", host))
    if not names:
        raise InvalidInput("missing option --host (or --hosts for sim agents)")
    if len(names) > 1 and driver != "sim":
        raise InvalidInput("only the sim driver serves several hosts in one agent")
    settings = checked_settings()
    from tasks.processes import run_agent
    from workers.hostfacts import Registration

    if driver == "libvirt":
        migration_uri = _migration_uri(migration_uri, address, settings.migration_allow_tcp)
    for value, flag in ((vcpus, "--vcpus"), (memory_mib, "--memory-mib")):
        if value is not None and value < 1:
            raise InvalidInput(f"{flag} must be at least 1")
    reg = Registration(driver, address, migration_uri, vcpus, memory_mib)
    run_agent(settings, names, driver, uri if driver == "libvirt" else "", reg)


def _migration_uri(given: str, address: str, allow_tcp: bool) -> str:
    """The URI peers reach this host's libvirtd at: checked like every URI fleet opens
    (``fleet.core.libvirt_uri``); TLS unless plain TCP is allowed, which is warned of."""
    from fleet.core.libvirt_uri import check_libvirt_uri

    uri = given or (f"qemu+{'tcp' if allow_tcp else 'tls'}://{address}/system"
                    if address else "")
    if uri:
        check_libvirt_uri(uri, allow_tcp)
    if uri.startswith("qemu+tcp:"):
        sys.stderr.write("fleet: warning: migrations to and from this host travel in clear"
                         " (qemu+tcp); prefer qemu+tls\n")
    return uri


@app.command()
def controller() -> None:
    """Run the controller: the Celery worker of the control queue and the job sweeper."""
    settings = checked_settings()
    from tasks.processes import run_controller

    run_controller(settings)


@app.command()
def monitor(
    name: Annotated[str, typer.Option(help="This monitor's name in the lease.")] = "monitor",
) -> None:
    """Watch heartbeats and fail hosts over: fence, then restart HA VMs elsewhere."""
    import logging

    settings = checked_settings()
    check_name("monitor", name)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from tasks.processes import run_monitor

    run_monitor(settings, name)


@app.command()
def demo(
    hosts_count: Annotated[int, typer.Option("--hosts", min=2, max=50,
                                             help="Simulated hosts.")] = 3,
    vms: Annotated[int | None, typer.Option(
        "--vms", min=1, max=400, metavar="M", show_default=False,
        help="Simulated HA VMs spread over the hosts (default: 3 per 3 hosts).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Run the scenario and exit.")] = False,
) -> None:
    """A simulated fleet with real Redis, Celery workers, a monitor and Flower: a live
    migration, then a host's power cut and its HA VMs failed over."""
    from fleet.cli.demo import run_demo

    raise typer.Exit(run_demo(hosts_count, vms, once, console))


def main(argv: list[str] | None = None) -> None:
    """Console entry point with fleet's error and exit-code conventions."""
    try:
        code = app(args=argv, standalone_mode=False)
    except USAGE_ERRORS as exc:
        _die(2, _usage_message(exc))
    except (click.exceptions.Abort, typer.Abort, KeyboardInterrupt):
        _die(130, "aborted")
    except InvalidInput as exc:
        _die(2, str(exc))
    except FleetError as exc:
        _die(1, str(exc))
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        _die(1, f"cannot reach Redis ({redacted(load_settings().redis_url)}): {exc}")
    except redis.ResponseError as exc:
        if "DB index" in str(exc):
            _die(2, f"FLEET_REDIS_URL names a database the Redis server does not have: {exc}")
        _die(1, f"Redis refused a command: {exc}")
    sys.exit(code if isinstance(code, int) else 0)


USAGE_ERRORS: tuple[type[Exception], ...] = (click.ClickException, TyperException)
DAY_S = 86_400


def _usage_message(exc: Exception) -> str:
    format_message = getattr(exc, "format_message", None)
    text = format_message() if callable(format_message) else str(exc)
    return str(text).replace("\n", " ")


def _die(code: int, message: str) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "error"
    sys.stderr.write(f"fleet: {first}\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
