"""The lab network: a bridge in the root namespace and one namespace + veth per host.

Only the lab's private /24 is configured: hosts get no default route, so guests, agents
and libvirtd can reach nothing but the bridge and each other; in the root namespace an
``unreachable`` guard route keeps lab traffic from ever taking the default route.
``isolate``/``heal`` set a host's root-side veth down/up (a network partition; the host
keeps running).
"""

from __future__ import annotations

from pathlib import Path

from fleet.lab.config import LabConfig
from fleet.lab.procs import run

GUEST_IF = "eth0"
GUARD_METRIC = 4000


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def guard_route(cfg: LabConfig) -> list[str]:
    """An ``unreachable`` route for the lab's /24, behind the bridge's own route: if the
    bridge vanishes while lab processes live, their traffic fails instead of following
    the default route off the machine."""
    return ["unreachable", f"{cfg.subnet}.0/24", "metric", str(GUARD_METRIC)]


def ensure_bridge(cfg: LabConfig) -> None:
    """The guard route and the bridge with the lab's first address, up (idempotent)."""
    run(["ip", "route", "replace", *guard_route(cfg)])
    if not link_exists(cfg.bridge):
        run(["ip", "link", "add", cfg.bridge, "type", "bridge"])
    run(["ip", "addr", "replace", f"{cfg.bridge_address}/24", "dev", cfg.bridge])
    run(["ip", "link", "set", cfg.bridge, "up"])


def ensure_host_net(cfg: LabConfig, host: str) -> None:
    """The host's namespace, its veth pair on the bridge and its address (idempotent)."""
    ns, veth = cfg.netns(host), cfg.veth(host)
    if not netns_exists(ns):
        run(["ip", "netns", "add", ns])
    if not link_exists(veth):
        run(["ip", "link", "add", veth, "type", "veth", "peer", "name", GUEST_IF,
             "netns", ns])
    run(["ip", "link", "set", veth, "master", cfg.bridge, "up"])
    run(["ip", "-n", ns, "addr", "replace", f"{cfg.address(host)}/24", "dev", GUEST_IF])
    run(["ip", "-n", ns, "link", "set", GUEST_IF, "up"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])


def set_link(cfg: LabConfig, host: str, up: bool) -> None:
    """Connect (``up``) or partition a host by its root-side veth."""
    run(["ip", "link", "set", cfg.veth(host), "up" if up else "down"])


def link_up(cfg: LabConfig, host: str) -> bool:
    """Whether the host's root-side veth is administratively up."""
    try:
        flags = int(Path(f"/sys/class/net/{cfg.veth(host)}/flags").read_text(), 16)
    except (OSError, ValueError):
        return False
    return bool(flags & 0x1)


def remove_host_net(cfg: LabConfig, host: str) -> None:
    """Delete the host's namespace (which deletes its veth pair) and any stray veth."""
    if netns_exists(cfg.netns(host)):
        run(["ip", "netns", "del", cfg.netns(host)])
    if link_exists(cfg.veth(host)):
        run(["ip", "link", "del", cfg.veth(host)], check=False)


def remove_bridge(cfg: LabConfig) -> None:
    """Delete the bridge, then the guard route (call once the lab's processes are gone)."""
    if link_exists(cfg.bridge):
        run(["ip", "link", "del", cfg.bridge])
    run(["ip", "route", "del", *guard_route(cfg)], check=False)
