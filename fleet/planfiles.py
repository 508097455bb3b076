"""Inventory files for offline what-if planning (``fleet plan``), JSON or CSV.

Hosts file: a JSON list of objects (or an object with a ``hosts`` list), or a CSV with a
header row. Fields:

====================  ========  ==============================================
field                 required  meaning
====================  ========  ==============================================
name                  yes       unique host name
vcpus                 yes       physical vCPUs (number >= 0)
memory_mib            yes       memory in MiB (whole number >= 0)
disk_gib              no        disk in GiB; absent = disk not tracked
state                 no        active (default), maintenance or down
labels                no        JSON object, or CSV ``k=v;k2=v2``
rack                  no        rack name (fault domain); absent = its own rack
arch                  no        e.g. x86_64, aarch64
cpu_models            no        CPU models offered: JSON list, or CSV ``a;b``
numa_cells            no        NUMA nodes: JSON list of ``{"vcpus": 16,
                                "memory_mib": 32768}``, or CSV ``16:32768;16:32768``;
                                they must add up to ``vcpus`` and ``memory_mib``
gpus                  no        GPUs (or other passthrough devices), whole number
====================  ========  ==============================================

VMs file: same forms (object key ``vms``). Fields: ``name``, ``vcpus`` (> 0),
``memory_mib`` (required); ``disk_gib``, ``host`` (where it runs; empty = a request),
``group``, ``rule`` (affinity, anti-affinity, rack-affinity, rack-anti-affinity,
fault-domain; a group without a rule means anti-affinity), ``domain`` (fault-domain
index), ``labels`` (host labels it requires), ``arch``, ``cpu_model``, ``numa`` (NUMA
nodes it is pinned to: 0 or absent floats, 1 must fit one node, 2 takes half on each of
two), ``gpus`` (below 1: a share of one device; else a whole number of devices). A VM
with a ``host`` may say which of its nodes and devices it holds: ``cells`` and
``devices``, JSON lists or CSV ``0;1`` of indexes (absent: the planner picks).

Inventory (``--inventory``): a JSON object ``{"hosts": [...], "vms": [...]}``, or a
directory holding ``hosts.json|hosts.csv`` and ``vms.json|vms.csv``. Every VM's ``host``
must name a host of the inventory.

Any problem raises ``InvalidInput`` with one line naming the file, row and field.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fleet.core.errors import InvalidInput
from fleet.core.models import HostState
from fleet.core.planmodel import RULES, NumaCell, PlanHost, PlanVM, Rule

T = TypeVar("T")
HOST_STATES = frozenset(s.value for s in HostState)
HOST_FIELDS = ("name", "vcpus", "memory_mib", "disk_gib", "state", "labels", "rack", "arch",
               "cpu_models", "numa_cells", "gpus")
VM_FIELDS = ("name", "vcpus", "memory_mib", "disk_gib", "host", "group", "rule", "domain",
             "labels", "arch", "cpu_model", "numa", "gpus", "cells", "devices")


@dataclass(frozen=True)
class Inventory:
    """Hosts and the VMs running on them."""

    hosts: list[PlanHost]
    vms: list[PlanVM]


class _Row:
    """One record being parsed; errors name the file and row."""

    def __init__(self, where: str, data: Mapping[str, Any]):
        self.where, self.data = where, data

    def fail(self, msg: str) -> InvalidInput:
        return InvalidInput(f"{self.where}: {msg}")

    def raw(self, key: str) -> Any:
        value = self.data.get(key)
        return None if value is None or value == "" else value

    def text(self, key: str, required: bool = False) -> str:
        value = self.raw(key)
        if value is None:
            if required:
                raise self.fail(f"missing {key}")
            return ""
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise self.fail(f"{key} must be text, got {value!r}")
        return str(value).strip()

    def number(self, key: str, minimum: float = 0.0) -> float:
        value = self.raw(key)
        if value is None:
            raise self.fail(f"missing {key}")
        try:
            num = float(value)
        except (TypeError, ValueError):
            raise self.fail(f"{key} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not math.isfinite(num) or num < minimum:
            raise self.fail(f"{key} must be a number >= {minimum:g}, got {value!r}")
        return num

    def whole(self, key: str) -> int:
        num = self.number(key)
        if num != int(num):
            raise self.fail(f"{key} must be a whole number, got {self.raw(key)!r}")
        return int(num)

    def optional_whole(self, key: str) -> int | None:
        return None if self.raw(key) is None else self.whole(key)

    def mapping(self, key: str) -> dict[str, str]:
        value = self.raw(key)
        if value is None:
            return {}
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        if not isinstance(value, str):
            raise self.fail(f"{key} must be an object or k=v;k2=v2, got {value!r}")
        pairs = [p.split("=", 1) for p in value.split(";") if p.strip()]
        if any(len(p) != 2 or not p[0].strip() for p in pairs):
            raise self.fail(f"{key} must look like k=v;k2=v2, got {value!r}")
        return {k.strip(): v.strip() for k, v in pairs}

    def items(self, key: str) -> frozenset[str]:
        value = self.raw(key)
        if value is None:
            return frozenset()
        if isinstance(value, list):
            return frozenset(str(v) for v in value)
        if not isinstance(value, str):
            raise self.fail(f"{key} must be a list or a;b, got {value!r}")
        return frozenset(p.strip() for p in value.split(";") if p.strip())

    def _list(self, key: str) -> list[Any]:
        value = self.raw(key)
        if value is None:
            return []
        if isinstance(value, str):
            return [p.strip() for p in value.split(";") if p.strip()]
        if not isinstance(value, list):
            raise self.fail(f"{key} must be a list, got {value!r}")
        return value

    def indexes(self, key: str) -> tuple[int, ...]:
        out: list[int] = []
        for item in self._list(key):
            num = _Row(self.where, {key: item}).number(key)
            if num != int(num):
                raise self.fail(f"{key} must list whole numbers, got {item!r}")
            out.append(int(num))
        return tuple(out)

    def cells(self, key: str) -> tuple[NumaCell, ...]:
        out: list[NumaCell] = []
        for item in self._list(key):
            data = item
            if isinstance(item, str):
                vcpus, _, mem = item.partition(":")
                data = {"vcpus": vcpus, "memory_mib": mem}
            if not isinstance(data, dict):
                raise self.fail(f"{key} items must be objects or vcpus:memory_mib, got {item!r}")
            cell = _Row(f"{self.where}: {key} item {len(out) + 1}", data)
            out.append(NumaCell(cell.number("vcpus"), cell.whole("memory_mib")))
        return tuple(out)


# ------------------------------------------------------------------ records
def _host(row: _Row) -> PlanHost:
    state = row.text("state") or HostState.ACTIVE.value
    if state not in HOST_STATES:
        raise row.fail(f"state must be one of {', '.join(sorted(HOST_STATES))}, got {state!r}")
    host = PlanHost(
        name=row.text("name", required=True), vcpus=row.number("vcpus"),
        memory_mib=row.whole("memory_mib"), disk_gib=row.optional_whole("disk_gib"),
        state=state, labels=row.mapping("labels"), rack=row.text("rack"),
        arch=row.text("arch"), cpu_models=row.items("cpu_models"),
        numa_cells=row.cells("numa_cells"), gpus=row.optional_whole("gpus") or 0,
    )
    cells = host.numa_cells
    if cells and (abs(sum(c.vcpus for c in cells) - host.vcpus) > 1e-6
                  or sum(c.memory_mib for c in cells) != host.memory_mib):
        raise row.fail(f"numa_cells must add up to vcpus {host.vcpus:g} and memory_mib "
                       f"{host.memory_mib}")
    return host


def _devices(row: _Row) -> tuple[int, float, tuple[int, ...], tuple[int, ...]]:
    """A VM's ``numa``, ``gpus``, ``cells`` and ``devices``, checked together."""
    numa, gpus = row.optional_whole("numa") or 0, row.number("gpus") if row.raw("gpus") else 0.0
    if gpus > 1 and gpus != int(gpus):
        raise row.fail(f"gpus must be below 1 (a share of one device) or whole, got {gpus:g}")
    cells, devices = row.indexes("cells"), row.indexes("devices")
    if cells and (not row.text("host") or len(cells) != numa or len(set(cells)) != numa):
        raise row.fail(f"cells must name {numa} distinct NUMA nodes of the VM's host")
    want = max(1, int(gpus)) if gpus else 0
    if devices and (not row.text("host") or len(devices) != want
                    or len(set(devices)) != want):
        raise row.fail(f"devices must name {want} distinct devices of the VM's host")
    return numa, gpus, cells, devices


def _vm(row: _Row) -> PlanVM:
    group, rule = row.text("group"), row.text("rule")
    if rule not in RULES:
        raise row.fail(f"rule must be one of {', '.join(sorted(RULES - {''}))}, got {rule!r}")
    if rule and not group:
        raise row.fail(f"rule {rule!r} needs a group")
    if group and not rule:
        rule = Rule.ANTI_AFFINITY.value
    if row.number("vcpus") <= 0:
        raise row.fail(f"vcpus must be > 0, got {row.raw('vcpus')!r}")
    numa, gpus, cells, devices = _devices(row)
    return PlanVM(
        name=row.text("name", required=True), vcpus=row.number("vcpus"),
        memory_mib=row.whole("memory_mib"), disk_gib=row.optional_whole("disk_gib") or 0,
        host=row.text("host"), group=group, rule=rule, domain=row.text("domain"),
        required_labels=row.mapping("labels"), arch=row.text("arch"),
        cpu_model=row.text("cpu_model"), numa=numa, gpus=gpus, cells=cells, devices=devices,
    )


# ------------------------------------------------------------------ files
def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read: {exc}") from None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}") from None


def _json_rows(path: Path, key: str, data: Any) -> list[_Row]:
    if isinstance(data, dict):
        data = data.get(key)
    if not isinstance(data, list):
        raise InvalidInput(f"{path}: expected a JSON list of {key} (or an object with {key!r})")
    rows = []
    for n, item in enumerate(data, 1):
        if not isinstance(item, dict):
            raise InvalidInput(f"{path}: {key} item {n} must be an object")
        rows.append(_Row(f"{path}: {key} item {n}", item))
    return rows


def _csv_rows(path: Path, required: Sequence[str]) -> list[_Row]:
    reader = csv.DictReader(_read_text(path).splitlines())
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise InvalidInput(f"{path}: missing column {missing[0]!r} (header: {','.join(header)})")
    try:
        return [_Row(f"{path}: line {n}", row) for n, row in enumerate(reader, 2)]
    except csv.Error as exc:
        raise InvalidInput(f"{path}: bad CSV: {exc}") from None


def _rows(path: Path, key: str) -> list[_Row]:
    if path.suffix.lower() == ".csv":
        return _csv_rows(path, ("name", "vcpus", "memory_mib"))
    return _json_rows(path, key, _load_json(path))


def _unique(path: Path, what: str, records: list[T], name: Callable[[T], str]) -> list[T]:
    seen: set[str] = set()
    for r in records:
        if name(r) in seen:
            raise InvalidInput(f"{path}: {what} {name(r)!r} appears twice")
        seen.add(name(r))
    return records


def _check_groups(path: Path, vms: Iterable[PlanVM]) -> None:
    rules: dict[str, str] = {}
    for vm in vms:
        if vm.group and rules.setdefault(vm.group, vm.rule) != vm.rule:
            raise InvalidInput(f"{path}: group {vm.group!r} mixes rules "
                               f"{rules[vm.group]!r} and {vm.rule!r}")


def read_hosts(path: str | Path) -> list[PlanHost]:
    """Hosts from a JSON or CSV file (schema in the module docstring)."""
    p = Path(path)
    return _unique(p, "host", [_host(r) for r in _rows(p, "hosts")], lambda h: h.name)


def read_vms(path: str | Path) -> list[PlanVM]:
    """VMs (placed or requested) from a JSON or CSV file."""
    p = Path(path)
    vms = _unique(p, "VM", [_vm(r) for r in _rows(p, "vms")], lambda v: v.name)
    _check_groups(p, vms)
    return vms


def _pick(directory: Path, stem: str) -> Path:
    for ext in (".json", ".csv"):
        if (directory / f"{stem}{ext}").is_file():
            return directory / f"{stem}{ext}"
    raise InvalidInput(f"{directory}: no {stem}.json or {stem}.csv")


def read_inventory(path: str | Path) -> Inventory:
    """Hosts and placed VMs from one JSON file or a directory of two files."""
    p = Path(path)
    if p.is_dir():
        hosts, vms, where = read_hosts(_pick(p, "hosts")), read_vms(_pick(p, "vms")), p
    else:
        data = _load_json(p)
        if not isinstance(data, dict):
            raise InvalidInput(f"{p}: expected a JSON object with 'hosts' and 'vms'")
        hosts = _unique(p, "host", [_host(r) for r in _json_rows(p, "hosts", data)],
                        lambda h: h.name)
        vms = _unique(p, "VM", [_vm(r) for r in _json_rows(p, "vms", data)], lambda v: v.name)
        _check_groups(p, vms)
        where = p
    by_name = {h.name: h for h in hosts}
    for vm in vms:
        if vm.host not in by_name:
            raise InvalidInput(f"{where}: VM {vm.name!r} runs on unknown host {vm.host!r}")
        _check_slot(where, vm, by_name[vm.host])
    return Inventory(hosts, vms)


def _check_slot(where: Path, vm: PlanVM, host: PlanHost) -> None:
    if any(k >= len(host.numa_cells) for k in vm.cells):
        raise InvalidInput(f"{where}: VM {vm.name!r} names a NUMA node {host.name!r} lacks")
    if any(k >= host.gpus for k in vm.devices):
        raise InvalidInput(f"{where}: VM {vm.name!r} names a device {host.name!r} lacks")


# ------------------------------------------------------------------ writing
def host_record(h: PlanHost) -> dict[str, Any]:
    """The JSON form of a host (optional fields only when set)."""
    out: dict[str, Any] = {"name": h.name, "vcpus": h.vcpus, "memory_mib": h.memory_mib}
    extra = {"disk_gib": h.disk_gib, "labels": dict(h.labels), "rack": h.rack,
             "arch": h.arch, "cpu_models": sorted(h.cpu_models),
             "state": h.state if h.state != HostState.ACTIVE.value else None,
             "numa_cells": [{"vcpus": c.vcpus, "memory_mib": c.memory_mib}
                            for c in h.numa_cells], "gpus": h.gpus}
    out.update({k: v for k, v in extra.items() if v})
    return out


def vm_record(v: PlanVM) -> dict[str, Any]:
    """The JSON form of a VM (optional fields only when set)."""
    out: dict[str, Any] = {"name": v.name, "vcpus": v.vcpus, "memory_mib": v.memory_mib}
    extra = {"disk_gib": v.disk_gib, "host": v.host, "group": v.group, "rule": v.rule,
             "domain": v.domain, "labels": dict(v.required_labels), "arch": v.arch,
             "cpu_model": v.cpu_model, "numa": v.numa, "gpus": v.gpus,
             "cells": list(v.cells), "devices": list(v.devices)}
    out.update({k: val for k, val in extra.items() if val})
    return out


def write_json(path: str | Path, hosts: Sequence[PlanHost] | None = None,
               vms: Sequence[PlanVM] | None = None) -> None:
    """Write hosts and/or VMs as a JSON object readable by the functions above."""
    data: dict[str, Any] = {}
    if hosts is not None:
        data["hosts"] = [host_record(h) for h in hosts]
    if vms is not None:
        data["vms"] = [vm_record(v) for v in vms]
    Path(path).write_text(json.dumps(data, indent=None, separators=(",", ":")) + "\n",
                          encoding="utf-8")


def write_csv(path: str | Path, records: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
    """Write host or VM records (``host_record``/``vm_record``) as CSV."""
    def cell(value: Any) -> str:
        if isinstance(value, dict):
            return ";".join(f"{k}={v}" for k, v in value.items())
        if isinstance(value, list):
            return ";".join(":".join(str(x) for x in v.values()) if isinstance(v, dict)
                            else str(v) for v in value)
        return "" if value is None else str(value)

    with Path(path).open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for r in records:
            w.writerow([cell(r.get(k)) for k in fields])
