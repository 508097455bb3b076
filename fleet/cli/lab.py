"""``fleet lab``: build and break a local KVM lab (root only; see ``fleet.lab``).

Registered by the main CLI as ``fleet lab``. Bad input raises ``InvalidInput`` (exit 2);
a lab that cannot be built raises ``LabError`` (exit 1).
"""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fleet.cli.common import JsonOpt, console, print_json
from fleet.core.errors import InvalidInput
from fleet.core.planmodel import RULES

lab_app = typer.Typer(help="A local lab of real KVM hosts (network namespaces + libvirtd).",
                      no_args_is_help=True)
lab_vm_app = typer.Typer(help="VMs in the lab.", no_args_is_help=True)
lab_app.add_typer(lab_vm_app, name="vm")

err_console = Console(stderr=True)
HostArg = Annotated[str, typer.Argument(help="A lab host: h1..hN.")]


def _root() -> Any:
    from fleet.lab.config import lab_root

    return lab_root()


@lab_app.command("up")
def up(
    hosts: Annotated[int, typer.Option("--hosts", help="Number of hosts h1..hN.")] = 2,
    agents: Annotated[bool, typer.Option("--agents/--no-agents",
                                         help="Start fleet agents and controller.")] = True,
    install: Annotated[bool, typer.Option("--install/--no-install",
                                          help="Install missing Debian packages.")] = True,
) -> None:
    """Build the lab (idempotent): bridge, Redis, hosts with libvirtd, agents, controller."""
    from fleet.lab import lab
    from fleet.lab.config import config_from_env

    cfg = config_from_env(hosts=hosts)
    started = time.monotonic()
    lab.up(cfg, agents=agents, install=install)
    err_console.print(f"lab up: {hosts} hosts in {time.monotonic() - started:.1f}s")
    for line in lab.env_lines(cfg.path):
        sys.stdout.write(line + "\n")


@lab_app.command("down")
def down() -> None:
    """Take the lab down completely (idempotent): processes, namespaces, bridge, files."""
    from fleet.lab import lab

    lab.down(_root())


@lab_app.command("env")
def env() -> None:
    """Print `export FLEET_...` lines pointing fleet at the lab (eval "$(fleet lab env)")."""
    from fleet.lab import lab

    for line in lab.env_lines(_root()):
        sys.stdout.write(line + "\n")


@lab_app.command("status")
def status(as_json: JsonOpt = False) -> None:
    """Hosts with address, libvirtd liveness and domains."""
    from fleet.lab import lab

    data = lab.status(_root())
    if as_json:
        print_json(data)
        return
    if not data["up"]:
        console.print(f"no lab in {data['root']}")
        return
    _status_table(data)


def _status_table(data: dict[str, Any]) -> None:
    table = Table(title=f"lab {data['root']} (redis {data['redis']['url']}"
                        f" {'up' if data['redis']['alive'] else 'DOWN'})")
    for column in ("host", "address", "libvirtd", "network", "agent", "domains"):
        table.add_column(column)
    for host in data["hosts"]:
        doms = host["domains"]
        table.add_row(
            host["name"], host["address"],
            "listening" if host["libvirtd_listening"] else
            ("alive" if host["libvirtd_alive"] else "dead"),
            "isolated" if host["isolated"] else "up",
            "alive" if host["agent_alive"] else "-",
            "?" if doms is None else ", ".join(f"{d['name']}:{d['state']}" for d in doms))
    console.print(table)


@lab_app.command("kill")
def kill(host: HostArg) -> None:
    """Power loss: kill every process of the host (libvirtd, guests, agent)."""
    from fleet.lab import lab

    pids = lab.kill_host(_root(), host)
    err_console.print(f"{host}: killed {len(pids)} processes")


@lab_app.command("isolate")
def isolate(host: HostArg) -> None:
    """Cut the host's network (its veth down); it keeps running."""
    from fleet.lab import lab

    lab.set_isolated(_root(), host, True)


@lab_app.command("heal")
def heal(host: HostArg) -> None:
    """Restore the host's network."""
    from fleet.lab import lab

    lab.set_isolated(_root(), host, False)


@lab_vm_app.command("create")
def vm_create(
    name: str,
    host: Annotated[str, typer.Option("--host", help="Lab host to start it on.")],
    memory: Annotated[int | None, typer.Option("--memory", help="MiB (64, or 256 --os).")]
    = None,
    os_guest: Annotated[bool, typer.Option("--os", help="A small Linux (TCG) that dirties"
                                           " memory, instead of a tiny OS-less guest.")]
    = False,
    dirty_mib_s: Annotated[float, typer.Option("--dirty-mib-s",
                                               help="MiB rewritten per second (--os).")] = 4.0,
    ha: Annotated[bool, typer.Option("--ha", help="Restart elsewhere if its host dies.")]
    = False,
    priority: Annotated[int, typer.Option("--priority", help="HA restart priority.")] = 0,
    group: Annotated[str, typer.Option("--group", help="Placement group (default: none).")] = "",
    rule: Annotated[str, typer.Option("--rule", help="The group's rule: affinity,"
                                      " anti-affinity, ...")] = "anti-affinity",
) -> None:
    """Define and start a VM on a lab host and register it in the lab's store."""
    from fleet.lab.guests import create_lab_vm
    from fleet.lab.lab import current

    if dirty_mib_s != 4.0 and not os_guest:
        raise InvalidInput("--dirty-mib-s needs --os (an OS-less guest dirties nothing)")
    cfg = current(_root()).config
    if rule not in RULES:
        raise InvalidInput(f"unknown rule {rule!r}: choose one of {', '.join(sorted(RULES))}")
    vm = create_lab_vm(cfg, name, host, memory, os_guest, dirty_mib_s, ha, priority, group,
                       rule if group else "")
    err_console.print(f"{vm.name} running on {vm.host} ({vm.memory_mib} MiB)")
