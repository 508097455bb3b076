"""Lab configuration: every name, address and path of a lab derives from a ``LabConfig``.

Hosts are ``h1``..``hN``; on the private /24 ``<subnet>.0/24`` the bridge is ``.1`` and
host ``hN`` is ``.(10+N)``. ``FLEET_LAB_*`` environment variables override the defaults
(so tests can run a lab of their own next to an operator's).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleet.core.definition_rules import DEFAULT_ROOTS
from fleet.core.errors import InvalidInput

if TYPE_CHECKING:
    from workers.hypervisors.libvirt import LibvirtHypervisor

MAX_HOSTS = 50
LIBVIRTD_PORT = 16509
_SUBNET = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})", re.ASCII)
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_HOST = re.compile(r"h([1-9][0-9]?)")


@dataclass(frozen=True)
class LabConfig:
    """Where a lab lives and how it is wired."""

    root: str = "/var/lib/fleet-lab"
    hosts: int = 2
    bridge: str = "fleetbr0"
    subnet: str = "10.77.0"
    redis_port: int = 6390
    prefix: str = "lab"
    netns_prefix: str = "fleet-"
    veth_prefix: str = "flv-"
    host_vcpus: int = 8
    host_memory_mib: int = 4096
    flower_port: int = 5555
    lan_missing: str = ""  # hosts without the guest network fleet-lan, e.g. "h2"

    def __post_init__(self) -> None:
        if not 1 <= self.hosts <= MAX_HOSTS:
            raise InvalidInput(f"--hosts must be between 1 and {MAX_HOSTS}, not {self.hosts}")
        match = _SUBNET.fullmatch(self.subnet)
        if not match or any(int(part) > 255 for part in match.groups()):
            raise InvalidInput(f"lab subnet {self.subnet!r} must be three octets like 10.77.0")
        if not _IFNAME.fullmatch(self.bridge) or not _IFNAME.fullmatch(self.veth("h50")):
            raise InvalidInput("lab bridge and veth names must fit in 15 characters")
        if not 1024 <= self.redis_port < 65536:
            raise InvalidInput(f"lab redis port {self.redis_port} out of range")

    # -- names -----------------------------------------------------------------------
    def host_names(self) -> list[str]:
        return [f"h{i}" for i in range(1, self.hosts + 1)]

    def lan_missing_hosts(self) -> frozenset[str]:
        return frozenset(h.strip() for h in self.lan_missing.split(",") if h.strip())

    def check_host(self, host: str) -> str:
        """``host`` if it names a host of this lab, else ``InvalidInput``."""
        match = _HOST.fullmatch(host)
        if not match or int(match.group(1)) > self.hosts:
            raise InvalidInput(f"unknown lab host {host!r}: the lab has h1..h{self.hosts}")
        return host

    def netns(self, host: str) -> str:
        return f"{self.netns_prefix}{host}"

    def veth(self, host: str) -> str:
        return f"{self.veth_prefix}{host}"

    # -- addresses -------------------------------------------------------------------
    @property
    def bridge_address(self) -> str:
        return f"{self.subnet}.1"

    def address(self, host: str) -> str:
        return f"{self.subnet}.{10 + int(host[1:])}"

    def uri(self, host: str) -> str:
        """The libvirt URI of a host, reachable from the root namespace and other hosts."""
        return f"qemu+tcp://{self.address(host)}/system"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.bridge_address}:{self.redis_port}/0"

    # -- paths -----------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return Path(self.root)

    @property
    def keys_dir(self) -> str:
        """The lab's signing keys (``fleet keys init``), made by ``lab up``."""
        return str(self.path / "keys")

    @property
    def domain_roots(self) -> list[str]:
        """Where lab guests' host paths lie: libvirt's own, the machine's kernels in
        /boot, the lab directory (initramfs, templates)."""
        return [*DEFAULT_ROOTS, "/boot", self.root]

    def hypervisor(self, host: str) -> LibvirtHypervisor:
        """A libvirt connection (opened on first use) to lab host ``host``'s libvirtd:
        qemu+tcp on the lab's private bridge, the lab's paths allowed in definitions."""
        from workers.hypervisors.libvirt import LibvirtHypervisor

        return LibvirtHypervisor(host, self.uri(host), allow_tcp=True, roots=self.domain_roots)

    def client_env(self) -> dict[str, str]:
        """What points fleet commands (and this process's tasks) at the lab."""
        return {"FLEET_REDIS_URL": self.redis_url, "FLEET_PREFIX": self.prefix,
                "FLEET_LAB_DIR": self.root, "FLEET_KEYS_DIR": self.keys_dir,
                "FLEET_DOMAIN_ROOTS": json.dumps(self.domain_roots)}

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    def host_dir(self, host: str) -> Path:
        return self.path / host

    @property
    def log_dir(self) -> Path:
        return self.path / "logs"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


_ENV = {  # LabConfig field -> environment variable
    "root": "FLEET_LAB_DIR", "bridge": "FLEET_LAB_BRIDGE", "subnet": "FLEET_LAB_SUBNET",
    "redis_port": "FLEET_LAB_REDIS_PORT", "prefix": "FLEET_LAB_PREFIX",
    "netns_prefix": "FLEET_LAB_NETNS_PREFIX", "veth_prefix": "FLEET_LAB_VETH_PREFIX",
    "host_vcpus": "FLEET_LAB_HOST_VCPUS", "host_memory_mib": "FLEET_LAB_HOST_MEMORY_MIB",
    "flower_port": "FLEET_LAB_FLOWER_PORT", "lan_missing": "FLEET_LAB_LAN_MISSING",
}
_INTS = {"redis_port", "host_vcpus", "host_memory_mib", "flower_port"}


def config_from_env(**overrides: Any) -> LabConfig:
    """A ``LabConfig`` from ``FLEET_LAB_*`` variables, then ``overrides``."""
    values: dict[str, Any] = {}
    for name, var in _ENV.items():
        raw = os.environ.get(var)
        if raw is None or raw == "":
            continue
        try:
            values[name] = int(raw) if name in _INTS else raw
        except ValueError:
            raise InvalidInput(f"{var} must be an integer, not {raw!r}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return LabConfig(**values)


def lab_root() -> Path:
    """The lab directory named by ``FLEET_LAB_DIR`` (default /var/lib/fleet-lab)."""
    return Path(os.environ.get("FLEET_LAB_DIR") or LabConfig.root)
