"""The whole lab: ``up`` (idempotent), ``down`` (leaves nothing), status and faults.

``up`` builds the bridge, the lab's Redis, every host (in parallel) and registers the
hosts in the lab's store, then starts agents and controller unless told not to. Every
pid goes to the state file. ``down`` kills by recorded pid and by namespace, deletes the
namespaces, veths and bridge, and removes the lab directory. ``kill`` is a power loss
(every process of the host's namespace), ``isolate``/``heal`` a network partition.
"""

from __future__ import annotations

import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fleet.core.hypervisor import HypervisorError
from fleet.lab import network
from fleet.lab.config import LabConfig, config_from_env
from fleet.lab.deps import ensure_deps, require_root
from fleet.lab.hosts import ensure_host, libvirtd_listening
from fleet.lab.procs import LabError, alive, kill, stop, wait_until
from fleet.lab.services import (
    ensure_redis,
    lab_redis_answers,
    register_hosts,
    start_agents,
    start_controller,
)
from fleet.lab.state import HostPids, LabState, load_state, locked, save_state
from workers import signing
from workers.procfs import netns_processes

LAB_CHILDREN = ("state.json", "logs", "redis", "guest", "keys")


def up(cfg: LabConfig, agents: bool = True, install: bool = True) -> LabState:
    """Build (or complete) the lab described by ``cfg``; running parts are kept."""
    require_root()
    ensure_deps(install)
    with locked(cfg.path):
        state = _adopt(cfg, load_state(cfg.path))
        network.ensure_bridge(cfg)
        signing.generate(cfg.keys_dir)
        state.redis = ensure_redis(cfg, state.redis)
        save_state(state)
        _ensure_hosts(cfg, state)
        register_hosts(cfg)
        if agents:
            start_agents(cfg, state)
            start_controller(cfg, state)
        save_state(state)
        return state


def _adopt(cfg: LabConfig, old: LabState | None) -> LabState:
    """The state to continue from; a lab wired differently must be taken down first."""
    if old is None:
        return LabState(cfg)
    if {**old.config.to_dict(), "hosts": 0} != {**cfg.to_dict(), "hosts": 0}:
        raise LabError(f"a lab with another configuration is up in {cfg.root}:"
                       " run `fleet lab down` first")
    for host in [h for h in old.hosts if h not in cfg.host_names()]:
        _remove_host(old.config, host, old.hosts.pop(host))
    old.config = cfg
    return old


def _ensure_hosts(cfg: LabConfig, state: LabState) -> None:
    def one(host: str) -> HostPids:
        network.ensure_host_net(cfg, host)
        return ensure_host(cfg, host, state.host(host))

    names = cfg.host_names()
    with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
        futures = {host: pool.submit(one, host) for host in names}
        errors = []
        for host, future in futures.items():
            try:
                state.hosts[host] = future.result()
            except LabError as exc:
                errors.append(str(exc))
    save_state(state)
    if errors:
        raise LabError("; ".join(errors))


def _remove_host(cfg: LabConfig, host: str, pids: HostPids) -> None:
    stop([pids.agent])
    power_off(cfg, host, {pids.holder, pids.virtlogd, pids.libvirtd}, fail=False)
    network.remove_host_net(cfg, host)
    shutil.rmtree(cfg.host_dir(host), ignore_errors=True)


def lab_netns_hosts(cfg: LabConfig) -> list[str]:
    """Hosts of this lab that have a namespace, whether or not the state knows them."""
    pattern = re.compile(re.escape(cfg.netns_prefix) + r"(h[0-9]+)$")
    names = [p.name for p in Path("/run/netns").glob("*")] if Path("/run/netns").exists() else []
    return [m.group(1) for m in map(pattern.match, names) if m]


def down(root: Path, expected: LabConfig | None = None) -> None:
    """Take the lab under ``root`` down completely; fine if it is not up.

    Without a state file only ``expected`` (else ``FLEET_LAB_*``) says which namespaces
    and bridge are this lab's: leftovers of a lab whose state was lost.
    """
    require_root()
    with locked(root):
        state = load_state(root) or LabState(expected or config_from_env(root=str(root)))
        cfg = state.config
        if cfg.path != root:
            raise LabError(f"lab state in {root} names another directory ({cfg.root})")
        stop([state.flower, state.monitor, state.controller])
        for host in sorted(set(state.hosts) | set(lab_netns_hosts(cfg))):
            _remove_host(cfg, host, state.hosts.get(host, HostPids()))
        stop([state.redis])
        network.remove_bridge(cfg)
        for child in LAB_CHILDREN:
            path = root / child
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()


def current(root: Path) -> LabState:
    """The state of the lab that is up under ``root``, or ``LabError``."""
    state = load_state(root)
    if state is None:
        raise LabError(f"no lab is up in {root}: run `fleet lab up` first")
    return state


def kill_host(root: Path, host: str) -> list[int]:
    """Power loss: SIGKILL every process of the host's namespace; the pids killed."""
    require_root()
    with locked(root):
        state = current(root)
        cfg = state.config
        cfg.check_host(host)
        pids = state.host(host)
        victims = power_off(cfg, host, {pids.holder, pids.virtlogd, pids.libvirtd, pids.agent})
        state.hosts[host] = HostPids()
        save_state(state)
        return victims


def power_off(cfg: LabConfig, host: str, recorded: set[int], fail: bool = True) -> list[int]:
    """SIGKILL the ``recorded`` pids and every process found in the host's namespace, again
    and again, until no thread of any is left (a process whose main thread is a zombie
    may still run others); the pids killed."""
    ns = cfg.netns(host)
    victims = {p for p in recorded if alive(p)}

    def all_gone() -> bool:
        found = set(netns_processes(ns)) | {p for p in victims if alive(p)}
        victims.update(found)
        kill(found)
        return not found

    wait_until(all_gone, 10.0, f"{host} to die", fail=fail)
    return sorted(victims)


def set_isolated(root: Path, host: str, isolated: bool) -> None:
    """Cut (``isolated``) or restore the host's network; it keeps running either way."""
    require_root()
    state = current(root)
    state.config.check_host(host)
    network.set_link(state.config, host, up=not isolated)


def env_lines(root: Path) -> list[str]:
    """Shell lines that point fleet commands at the lab's Redis and prefix."""
    state = load_state(root)
    cfg = state.config if state else config_from_env(root=str(root))
    shown = ("FLEET_REDIS_URL", "FLEET_PREFIX", "FLEET_KEYS_DIR")
    return [f"export {k}={v}" for k, v in cfg.client_env().items() if k in shown]


def status(root: Path, domains: bool = True) -> dict[str, Any]:
    """The lab as JSON-able data: bridge, Redis, controller and each host."""
    state = load_state(root)
    if state is None:
        return {"up": False, "root": str(root), "hosts": []}
    cfg = state.config
    return {
        "up": True, "root": str(root),
        "bridge": {"name": cfg.bridge, "address": cfg.bridge_address,
                   "exists": network.link_exists(cfg.bridge)},
        "redis": {"url": cfg.redis_url, "pid": state.redis, "alive": lab_redis_answers(cfg)},
        "controller": {"pid": state.controller, "alive": alive(state.controller)},
        "monitor": {"pid": state.monitor, "alive": alive(state.monitor)},
        "flower": {"pid": state.flower, "alive": alive(state.flower),
                   "url": f"http://127.0.0.1:{cfg.flower_port}"},
        "hosts": [_host_status(cfg, h, state.host(h), domains) for h in cfg.host_names()],
    }


def _host_status(cfg: LabConfig, host: str, pids: HostPids, domains: bool) -> dict[str, Any]:
    isolated = not network.link_up(cfg, host)
    listening = not isolated and libvirtd_listening(cfg, host)
    row: dict[str, Any] = {
        "name": host, "address": cfg.address(host), "uri": cfg.uri(host),
        "netns": cfg.netns(host), "holder_alive": alive(pids.holder),
        "libvirtd_alive": alive(pids.libvirtd), "libvirtd_listening": listening,
        "isolated": isolated, "agent_alive": alive(pids.agent), "domains": None,
    }
    if domains and listening:
        row["domains"] = _domains(cfg, host)
    return row


def _domains(cfg: LabConfig, host: str) -> list[dict[str, Any]] | None:
    hv = cfg.hypervisor(host)
    try:
        return [{"name": d.name, "state": d.state.value, "memory_mib": d.memory_mib,
                 "migrating": d.migrating} for d in hv.list_domains()]
    except HypervisorError:
        return None
    finally:
        hv.close()
