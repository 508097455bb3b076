"""What the libvirt adapter reads of a host and its domains: facts, definitions, pre-flight.

Functions of an open libvirt connection (``conn``), used by ``LibvirtHypervisor``:
``node_facts`` (``getInfo``, ``getCapabilities``, ``getDomainCapabilities``,
``getFreeMemory``, active networks and their bridges, host bridges), ``definition`` (a
domain's persistent, migratable XML), ``preflight`` (may this host take a guest: its
networks active here, its machine type known, its CPU compatible by
``compareHypervisorCPU``) and the lifecycle-event subscription.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fleet.core.domainfacts import read_domain
from fleet.core.errors import InvalidInput
from fleet.core.nodefacts import NodeFacts, offers, passthrough, read_node, shortfall

CPU_COMPARE_INCOMPATIBLE = 0
SYS_NET = Path("/sys/class/net")


def _lib() -> Any:
    import libvirt

    return libvirt


def host_bridges(sys_net: Path = SYS_NET) -> list[str]:
    """Linux bridges of the host this process runs on (``/sys/class/net/*/bridge``)."""
    try:
        return sorted(p.name for p in sys_net.iterdir() if (p / "bridge").is_dir())
    except OSError:
        return []


def _networks(conn: Any) -> tuple[list[str], list[str]]:
    lib = _lib()
    names, bridges = [], []
    for net in conn.listAllNetworks(lib.VIR_CONNECT_LIST_NETWORKS_ACTIVE):
        names.append(net.name())
        try:
            bridges.append(net.bridgeName())
        except lib.libvirtError:
            continue
    return names, bridges


def _domcaps(conn: Any) -> str:
    try:
        return str(conn.getDomainCapabilities(None, None, None, None, 0))
    except _lib().libvirtError:
        return ""


def _devices(conn: Any) -> dict[str, int]:
    lib = _lib()
    try:
        found = conn.listAllDevices(lib.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV)
        return passthrough(dev.XMLDesc(0) for dev in found)
    except lib.libvirtError:
        return {}


def node_facts(conn: Any, local: bool) -> NodeFacts:
    """The host's facts; ``local``: this process runs on that host (sees its bridges)."""
    networks, net_bridges = _networks(conn)
    bridges = net_bridges + (host_bridges() if local else [])
    return read_node(conn.getInfo(), conn.getCapabilities(), domcaps_xml=_domcaps(conn),
                     free_memory_b=int(conn.getFreeMemory()), networks=networks,
                     bridges=sorted(set(bridges)), devices=_devices(conn))


def definition(dom: Any) -> str:
    """The domain's persistent definition in its migratable form."""
    lib = _lib()
    flags = lib.VIR_DOMAIN_XML_MIGRATABLE | lib.VIR_DOMAIN_XML_SECURE
    if dom.isPersistent():
        flags |= lib.VIR_DOMAIN_XML_INACTIVE
    return str(dom.XMLDesc(flags))


def guest_cpu_xml(xml: str) -> str:
    """The guest's ``<cpu>`` element worth comparing with a host ("" if none is)."""
    root = ET.fromstring(xml)
    cpu = root.find("cpu")
    if cpu is None or cpu.find("model") is None or cpu.get("mode") == "host-passthrough" \
            or cpu.get("check") == "none":
        return ""  # nothing to compare, or libvirt itself is told not to check
    return ET.tostring(cpu, encoding="unicode")


def cpu_reason(conn: Any, xml: str) -> str:
    """Why this host cannot run the guest CPU of ``xml`` ("" if it can or nothing to ask)."""
    cpu = guest_cpu_xml(xml)
    if not cpu:
        return ""
    facts = read_domain(xml)
    lib = _lib()
    try:
        verdict = conn.compareHypervisorCPU(None, facts.arch or None, facts.machine or None,
                                            facts.virt_type or None, cpu, 0)
    except lib.libvirtError as exc:
        return f"guest CPU cannot be compared here: {exc.get_error_message()}"
    if int(verdict) == CPU_COMPARE_INCOMPATIBLE:
        return f"guest CPU {facts.cpu_model} is incompatible with this host's CPU"
    return ""


def preflight(conn: Any, needs: Sequence[str], xml: str, reported: dict[str, Any],
              local: bool) -> list[str]:
    """Reasons this host cannot take the guest (empty: it can).

    Networks, machine types and CPU models are asked of the host's libvirt now; bridges
    come from what the host's agent ``reported`` when this process is not on that host.
    """
    facts = node_facts(conn, local).to_dict()
    if not local:
        facts["bridges"] = sorted({*facts["bridges"], *reported.get("bridges", ())})
    reasons = shortfall(needs, offers(facts))
    if xml:
        try:
            why = cpu_reason(conn, xml)
        except (ET.ParseError, InvalidInput):
            why = ""
        if why:
            reasons.append(why)
    return reasons


def watch_lifecycle(conn: Any, wake: Callable[[str], None]) -> None:
    """Call ``wake(domain name)`` on every lifecycle event of ``conn`` (event-loop thread;
    ``wake`` must not block)."""
    lib = _lib()

    def callback(_conn: Any, dom: Any, _event: int, _detail: int, _opaque: Any) -> None:
        wake(dom.name())

    conn.domainEventRegisterAny(None, lib.VIR_DOMAIN_EVENT_ID_LIFECYCLE, callback, None)
