"""``fleet sim ...``: drive a simulated fleet by hand — create guests, cut and restore power.

Only hosts registered with the ``sim`` driver are touched; the simulated guests and the
power switch live in Redis under the fleet's prefix, where the sim agents read them.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Annotated

import typer

from fleet.cli.common import JsonOpt, console, load_store, print_json
from fleet.core.errors import InvalidInput
from fleet.core.models import VM
from fleet.core.names import check_name

if TYPE_CHECKING:
    from fleet.store import Store
    from workers.hypervisors.sim import SimHypervisor

sim_app = typer.Typer(help="Drive a simulated fleet: create guests, cut a host's power.",
                      no_args_is_help=True)
sim_vm_app = typer.Typer(help="Simulated guests.", no_args_is_help=True)
sim_power_app = typer.Typer(help="The power switch of a simulated host.",
                            no_args_is_help=True)
sim_app.add_typer(sim_vm_app, name="vm")
sim_app.add_typer(sim_power_app, name="power")


def sim_host(store: Store, name: str) -> SimHypervisor:
    """The simulated hypervisor of host ``name``; a host of another driver is refused."""
    from workers.hypervisors.sim import SimHypervisor

    host = store.get_host(check_name("host", name))
    if host.driver != "sim":
        raise InvalidInput(f"host {name} runs the {host.driver or 'unknown'} driver, not sim:"
                           " fleet sim drives simulated hosts only")
    return SimHypervisor(store.r, store.keys, host.name)


@sim_vm_app.command("create")
def sim_vm_create(
    name: str,
    host: Annotated[str, typer.Option("--host", help="The sim host that runs it.",
                                      show_default=False)],
    vcpus: Annotated[int, typer.Option(min=1, max=512, help="vCPUs.")] = 1,
    memory_mib: Annotated[int, typer.Option(min=64, max=4_194_304,
                                            help="Memory, MiB.")] = 1024,
    ha: Annotated[bool, typer.Option("--ha", help="Restart it elsewhere if its host dies.")]
    = False,
    priority: Annotated[int, typer.Option(min=0, max=1000,
                                          help="Failover order: higher first.")] = 0,
    dirty_mib_s: Annotated[float, typer.Option(
        min=0, max=1_000_000, help="How fast the guest dirties memory, MiB/s.")] = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Start a simulated guest on a sim host and record it."""
    from workers.inventory import create_vm

    _, store = load_store()
    vm_name = check_name("VM", name)
    hv = sim_host(store, host)
    if not hv.powered():
        raise InvalidInput(f"host {hv.host} has no power: fleet sim power on {hv.host}")
    vm = create_vm(store, hv, VM(vm_name, str(uuid.uuid4()), hv.host, vcpus, memory_mib,
                                 ha=ha, priority=priority, dirty_mib_s=dirty_mib_s))
    if as_json:
        return print_json(vm.to_dict())
    console.print(f"VM {vm.name} runs on {vm.host}")
    return None


@sim_power_app.command("off")
def sim_power_off(host: str) -> None:
    """Cut a sim host's power: its guests die and its agent falls silent for it."""
    _, store = load_store()
    hv = sim_host(store, host)
    if not hv.powered():
        console.print(f"host {hv.host} is already off")
        return
    hv.power_off()
    console.print(f"host {hv.host} is off; the monitor will fence it and fail its HA VMs"
                  " over")


@sim_power_app.command("on")
def sim_power_on(host: str) -> None:
    """Restore a sim host's power; a fenced host stays out of placement until
    ``fleet host activate``."""
    _, store = load_store()
    hv = sim_host(store, host)
    hv.power_on()
    console.print(f"host {hv.host} is on; `fleet host activate {hv.host}` returns it to"
                  " placement once it is fenced")
