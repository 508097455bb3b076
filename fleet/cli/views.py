"""Plain views of records for ``--json`` output and tables (the CLI's scripting contract)."""

from __future__ import annotations

from typing import Any

from fleet.cli.human import human_age, human_time
from fleet.cli.job_views import job_detail, job_row, move_row
from fleet.core.models import VM, Host
from fleet.core.policy import PolicyConfig
from fleet.store import Store


def host_rows(store: Store) -> list[dict[str, Any]]:
    vms = store.list_vms()
    rows = []
    for host in store.list_hosts():
        mine = [v for v in vms if v.host == host.name]
        rows.append(_host_row(host, mine, store.heartbeat(host.name) is not None))
    return rows


def _host_row(host: Host, vms: list[VM], alive: bool) -> dict[str, Any]:
    return {
        "name": host.name, "state": host.state, "vcpus": host.vcpus,
        "memory_mib": host.memory_mib, "used_vcpus": sum(v.vcpus for v in vms),
        "used_memory_mib": sum(v.memory_mib for v in vms),
        "vms": sorted(v.name for v in vms), "agent_alive": alive, "labels": host.labels,
    }


def host_detail(store: Store, name: str, fence_agent: str, now: float) -> dict[str, Any]:
    """One host in full: record, use, heartbeat, failover health and why, its VMs."""
    host = store.get_host(name)
    vms = [v for v in store.list_vms() if v.host == name]
    beat = store.heartbeat(name)
    health = store.failover.load_state().get("hosts", {}).get(name)
    heartbeat = None if beat is None else {
        "age_s": round(max(0.0, now - float(beat["at"])), 2), "agent": beat.get("agent", ""),
        "hypervisor_ok": beat.get("hypervisor_ok"), "error": beat.get("error", ""),
        "domains": len(beat.get("domains", []))}
    return {
        **_host_row(host, vms, beat is not None), "driver": host.driver,
        "address": host.address, "migration_uri": host.migration_uri,
        "heartbeat": heartbeat, "failover": health, "failover_job": store.failover.job(name),
        "fence_agent": fence_agent, "vm_states": {v.name: v.state for v in vms},
        "capacity_from": host.capacity_from, "node": host.node,
    }


def node_summary(node: dict[str, Any]) -> str:
    """A host's libvirt facts on one line, for tables."""
    if not node:
        return "not reported"
    cells = len(node.get("numa_cells", ()))
    nets = ", ".join(node.get("networks", ())) or "none"
    return (f"{node.get('arch', '?')} {node.get('cpu_model', '?')}, {node.get('cpus', '?')}"
            f" CPUs, {node.get('memory_mib', '?')} MiB, {cells} NUMA cell(s), "
            f"networks: {nets}")


def vm_rows(store: Store) -> list[dict[str, Any]]:
    """Every VM with its host's state: ``host_state`` is ``down`` when the host's agent
    is silent, else the host record's state."""
    hosts = {h.name: h.state for h in store.list_hosts()}
    alive = {name: store.heartbeat(name) is not None for name in hosts}
    return [{
        "name": v.name, "uuid": v.uuid, "host": v.host, "state": v.state, "vcpus": v.vcpus,
        "memory_mib": v.memory_mib, "ha": v.ha, "priority": v.priority, "group": v.group,
        "host_state": hosts.get(v.host, "unknown") if alive.get(v.host) else "down",
    } for v in store.list_vms()]


def shown_state(row: dict[str, Any]) -> str:
    """A VM's recorded state as a table shows it: ``running (host down)`` when its host
    is neither active nor in maintenance."""
    host = row.get("host_state", "active")
    return row["state"] if host in ("active", "maintenance") else f"{row['state']} (host {host})"


def vm_detail(store: Store, name: str) -> dict[str, Any]:
    """One VM in full; ``reported_by`` is every host whose last heartbeat lists it, and
    ``guard`` what the VM guard remembers of it (restarts in its window, given up)."""
    vm = store.get_vm(name)
    row = vm.to_dict()
    row["definition"] = f"{len(vm.definition)} bytes" if vm.definition else ""
    reported = {}
    for host in store.list_hosts():
        beat = store.heartbeat(host.name) or {}
        for domain in beat.get("domains", []):
            if domain.get("name") == vm.name:
                reported[host.name] = domain.get("state", "")
    guard = store.failover.load_guard().get(vm.name, {})
    return {**row, "job": store.owning_job(vm.name), "reported_by": reported,
            "guard": {"restarts": guard.get("starts", []),
                      "gave_up": bool(guard.get("gave_up", False))}}


HOST_FIELDS = ("host", "source", "destination")


def event_rows(store: Store, job: str | None, host: str | None, progress: bool,
               ) -> list[dict[str, Any]]:
    """Events of one job, or of the audit stream, optionally only those naming ``host``."""
    found = store.events(job) if job else store.journal.audit(count=100_000)
    rows = []
    for _, event in found:
        if event["kind"] == "move.progress" and not progress:
            continue
        if host and not any(event.get(f) == host for f in HOST_FIELDS):
            continue
        rows.append(_event_row(event))
    return rows


def _event_row(event: dict[str, Any]) -> dict[str, Any]:
    import datetime

    when = datetime.datetime.fromtimestamp(event["at"], tz=datetime.UTC)
    detail = {k: v for k, v in event.items() if k not in ("kind", "job", "at") and v != ""}
    return {"time": when.isoformat(timespec="milliseconds"), "kind": event["kind"],
            "job": event["job"], "detail": " ".join(f"{k}={v}" for k, v in detail.items()),
            "data": detail}


def host_fields(detail: dict[str, Any], now: float) -> dict[str, Any]:
    """``host_detail`` for a table: libvirt facts, heartbeat and failover health in
    words, times as ages."""
    return {**detail, "node": node_summary(detail["node"]),
            "heartbeat": heartbeat_text(detail["heartbeat"]),
            "failover": health_text(detail["failover"], now)}


def heartbeat_text(beat: dict[str, Any] | None) -> str:
    """``1.2s ago, agent a1, hypervisor ok, 3 domain(s)``; says so when none is live."""
    if beat is None:
        return "none: the agent is silent"
    age = float(beat["age_s"])
    parts = [f"{age:.1f}s ago" if age < 60 else f"{human_age(age)} ago"]
    if beat.get("agent"):
        parts.append(f"agent {beat['agent']}")
    ok = beat.get("hypervisor_ok")
    if ok is not None:
        parts.append("hypervisor ok" if ok else "hypervisor not answering")
    parts.append(f"{beat.get('domains', 0)} domain(s)")
    if beat.get("error"):
        parts.append(f"error: {beat['error']}")
    return ", ".join(parts)


def health_text(health: dict[str, Any] | None, now: float) -> str:
    """The monitor's view of a host: ``suspect for 12s (since 2026-...Z), last beat 15s
    ago, 1 fence attempt(s), deadline in 8s: why``."""
    if not health:
        return "not watched by a monitor yet"
    since = float(health.get("since", 0.0))
    parts = [str(health.get("state", "?"))]
    if since:
        parts[0] += f" for {human_age(now - since)} (since {human_time(since)})"
    beat = float(health.get("last_beat", 0.0))
    if beat:
        parts.append(f"last beat {human_age(now - beat)} ago")
    if health.get("attempts"):
        parts.append(f"{health['attempts']} fence attempt(s)")
    deadline = float(health.get("deadline", 0.0))
    if deadline > now:
        parts.append(f"deadline in {human_age(deadline - now)}")
    if health.get("confirmed_by"):
        parts.append(f"confirmed down by {health['confirmed_by']}")
    if health.get("returned"):
        parts.append("returned")
    text = ", ".join(parts)
    return f"{text}: {health['detail']}" if health.get("detail") else text


def vm_fields(detail: dict[str, Any], now: float) -> dict[str, Any]:
    """``vm_detail`` for a table: the policy and guard in words, restarts as ages."""
    guard = detail["guard"]
    starts = sorted(float(s) for s in guard.get("restarts", []))
    restarts = (f"{len(starts)}, last {human_age(now - starts[-1])} ago" if starts
                else "none")
    shown_guard = f"restarts: {restarts}" + ("; gave up" if guard.get("gave_up") else "")
    return {**detail, "policy": detail["policy"] or "defaults",
            "reported_by": detail["reported_by"] or "no host", "guard": shown_guard}


def policy_rows(overrides: dict[str, Any], defaults: PolicyConfig) -> list[list[Any]]:
    """Every migration policy setting of ``defaults`` with the value
    that applies and whether it is this VM's own or the default."""
    from dataclasses import fields

    rows = []
    for setting in fields(defaults):
        name = setting.name
        if name in overrides:
            rows.append([name, overrides[name], "set for this VM"])
        else:
            rows.append([name, getattr(defaults, name), "default"])
    return rows


__all__ = ["event_rows", "health_text", "heartbeat_text", "host_detail", "host_fields",
           "host_rows", "human_age", "job_detail", "job_row", "move_row", "node_summary",
           "policy_rows", "shown_state", "vm_detail", "vm_fields", "vm_rows"]
