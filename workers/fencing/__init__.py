"""Fence agents behind one Protocol, chosen per host from configuration.

The configuration maps a host name (or ``"*"`` for every other host) to a table with
an ``agent`` key and that agent's own keys, e.g. in TOML::

    [fleet.fence.h1]
    agent = "ipmi"
    address = "10.0.0.101"
    username = "admin"
    password_file = "/etc/fleet/ipmi-h1"

    [fleet.fence."*"]
    agent = "redfish"
    url = "https://{host}-bmc.example.net"
    username = "fence"
    password_file = "/etc/fleet/redfish"

``{host}`` in any string value is replaced by the host's name. Agents: ``ipmi``,
``redfish``, ``ssh``, ``manual`` and ``stub`` (tests); others (the lab's power switch)
are added with ``register``. A host with no entry gets the ``manual`` agent, so a
missing configuration can never restart VMs of a host that may still run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fleet.core.errors import InvalidInput
from workers.fencing.base import (
    Clock,
    ConfirmingAgent,
    FenceAgent,
    FenceError,
    FenceOutcome,
    FenceTimeout,
    PowerState,
    SystemClock,
    run_fence,
)
from workers.fencing.manual import ManualAgent

__all__ = [
    "AGENTS",
    "Clock",
    "ConfirmingAgent",
    "FenceAgent",
    "FenceError",
    "FenceOutcome",
    "FenceTimeout",
    "ManualAgent",
    "PowerState",
    "SystemClock",
    "agent_for",
    "check_config",
    "register",
    "run_fence",
]

Builder = Callable[..., FenceAgent]


def _ipmi(**kw: Any) -> FenceAgent:
    from workers.fencing.ipmi import IpmiAgent

    return IpmiAgent(**kw)


def _redfish(**kw: Any) -> FenceAgent:
    from workers.fencing.redfish import RedfishAgent

    return RedfishAgent(**kw)


def _ssh(**kw: Any) -> FenceAgent:
    from workers.fencing.ssh import SshAgent

    return SshAgent(**kw)


def _stub(**kw: Any) -> FenceAgent:
    from workers.fencing.stub import StubAgent

    return StubAgent(**kw)


AGENTS: dict[str, Builder] = {
    "ipmi": _ipmi,
    "redfish": _redfish,
    "ssh": _ssh,
    "manual": ManualAgent,
    "stub": _stub,
}


LATE_KINDS = frozenset({"sim", "lab"})
"""Kinds the fencing process registers itself (``tasks.failover_tasks``): their agents
need that process's runtime."""


def register(kind: str, builder: Builder) -> None:
    """Make ``agent = "<kind>"`` build agents with ``builder(**keys)``."""
    AGENTS[kind] = builder


def check_config(config: Mapping[str, Mapping[str, Any]]) -> None:
    """``InvalidInput`` unless every entry names a known agent with usable parameters."""
    for host, entry in config.items():
        kind = str(entry.get("agent", "manual")) if isinstance(entry, Mapping) else ""
        if not isinstance(entry, Mapping) or kind not in {*AGENTS, *LATE_KINDS}:
            raise InvalidInput(f"fence config for {host}: unknown agent {kind!r} (choose one "
                               f"of {', '.join(sorted({*AGENTS, *LATE_KINDS}))})")
        if kind in AGENTS:
            agent_for(host, config)


def _fill(value: Any, host: str) -> Any:
    return value.replace("{host}", host) if isinstance(value, str) else value


def fence_kind(host: str, config: Mapping[str, Mapping[str, Any]]) -> str:
    """The kind of ``host``'s fence agent as configured (``manual`` when none is)."""
    entry = config.get(host, config.get("*"))
    return "manual" if entry is None else str(entry.get("agent", "manual"))


def kinds(config: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Each configured key (a host or ``*``) with its agent kind: what the fencing process
    publishes, without parameters or secrets."""
    return {key: fence_kind(key, config) for key in config}


def published_kind(host: str, published: Mapping[str, Any] | None) -> str:
    """``host``'s fence agent as the fencing process published it, with who published
    it; says so when nothing was published (no controller has run)."""
    if not published:
        return "unknown: no controller has published its fence configuration"
    agents = {k: {"agent": v} for k, v in dict(published.get("agents", {})).items()}
    return f"{fence_kind(host, agents)} (as run by {published.get('by', '?')})"


def agent_for(host: str, config: Mapping[str, Mapping[str, Any]]) -> FenceAgent:
    """The fence agent of ``host``; see the module doc. Bad config is ``InvalidInput``."""
    entry = config.get(host, config.get("*"))
    if entry is None:
        return ManualAgent(note="no fence agent configured")
    params = {k: _fill(v, host) for k, v in entry.items() if k != "agent"}
    kind = fence_kind(host, config)
    builder = AGENTS.get(kind)
    if builder is None:
        raise InvalidInput(f"fence config for {host}: unknown agent {kind!r} "
                           f"(choose one of {', '.join(sorted(AGENTS))})")
    try:
        return builder(**params)
    except TypeError as exc:
        raise InvalidInput(f"fence config for {host}: {exc}") from None
    except FenceError as exc:
        raise InvalidInput(f"fence config for {host}: {exc}") from None
