"""Convert the shared production fleets into ``fleet plan`` inventory files.

Run ``python -m bench.convert OUT_DIR`` (the runner does it into a temporary directory);
nothing generated is committed.

- Alibaba (``alibaba-openb-2023``): node -> host (vCPUs = cpu_milli / 1000, memory_mib as
  is, ``gpu`` devices -> ``gpus``); pod -> VM request, in creation order, with ``gpus`` =
  ``num_gpu`` whole devices, or ``gpu_milli`` / 1000 of one device when it is below 1000.
  Files: ``alibaba/hosts.csv``, ``alibaba/vms.csv``.
- Huawei (``huawei-topology-vm-placement``): ``servers.csv`` row i -> ``host-<i>`` with two
  NUMA cells (``CPU1``/``RAM1`` and ``CPU2``/``RAM2``; RAM GiB x 1024 -> MiB) and their sum
  as the host's totals, rack from ``topology.csv``. Requests ``C1..C5`` ->
  ``huawei/vms_C<k>.csv`` in order, ``numa`` as is (1: one node, 2: half on each). Rules:
  ``affinity`` -> ``rack-affinity`` (a group's demand exceeds any host; same rack fits, see
  the data README), ``anti-affinity`` -> ``anti-affinity`` (different hosts),
  ``fault_domain`` -> ``fault-domain`` (VMs of different domains never share a rack).
  Group ids are reused across strategies, so a group is named ``<rule>-<id>``.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

from fleet.planfiles import HOST_FIELDS, VM_FIELDS, write_csv

DATA = Path(os.environ.get("FLEET_BENCH_DATA",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))
RULES = {"affinity": "rack-affinity", "anti-affinity": "anti-affinity",
         "fault_domain": "fault-domain"}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def alibaba(out: Path) -> tuple[Path, Path]:
    src = DATA / "alibaba-openb-2023"
    out.mkdir(parents=True, exist_ok=True)
    hosts = [{"name": r["sn"], "vcpus": int(r["cpu_milli"]) / 1000,
              "memory_mib": int(r["memory_mib"]), "gpus": int(r["gpu"])}
             for r in _rows(src / "nodes.csv")]
    pods = sorted(_rows(src / "pods.csv"), key=lambda r: (int(r["creation_time"]), r["name"]))
    vms = [{"name": r["name"], "vcpus": int(r["cpu_milli"]) / 1000,
            "memory_mib": int(r["memory_mib"]), "gpus": _gpus(r)} for r in pods]
    write_csv(out / "hosts.csv", hosts, HOST_FIELDS)
    write_csv(out / "vms.csv", vms, VM_FIELDS)
    return out / "hosts.csv", out / "vms.csv"


def _gpus(pod: dict[str, str]) -> float:
    count, each = int(pod["num_gpu"]), int(pod["gpu_milli"])
    return each / 1000 if count and each < 1000 else count


def _num(text: str) -> str:
    return str(int(float(text)))


def huawei(out: Path) -> tuple[Path, list[Path]]:
    src = DATA / "huawei-topology-vm-placement"
    out.mkdir(parents=True, exist_ok=True)
    racks = {r["host_id"]: r["rack_id"] for r in _rows(src / "topology.csv")}
    hosts = []
    for i, r in enumerate(_rows(src / "servers.csv")):
        name = f"host-{i}"
        cells = [{"vcpus": int(r[f"CPU{k}"]), "memory_mib": int(r[f"RAM{k}"]) * 1024}
                 for k in (1, 2)]
        hosts.append({"name": name, "vcpus": sum(c["vcpus"] for c in cells),
                      "memory_mib": sum(c["memory_mib"] for c in cells),
                      "rack": f"rack-{racks[name]}", "numa_cells": cells})
    write_csv(out / "hosts.csv", hosts, HOST_FIELDS)
    files = []
    for k in range(1, 6):
        vms = []
        for n, r in enumerate(_rows(src / f"requests_C{k}.csv")):
            vm = {"name": f"C{k}-{n:05d}", "vcpus": int(r["flavor_vcpus"]),
                  "memory_mib": int(float(r["flavor_ram"])) * 1024, "numa": int(r["numa"])}
            if r["strategy"]:
                rule = RULES[r["strategy"]]
                vm.update(group=f"{rule}-{_num(r['group'])}", rule=rule,
                          domain=_num(r["domain"]) if r["domain"] else "")
            vms.append(vm)
        write_csv(out / f"vms_C{k}.csv", vms, VM_FIELDS)
        files.append(out / f"vms_C{k}.csv")
    return out / "hosts.csv", files


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/data")
    print(alibaba(target / "alibaba"), huawei(target / "huawei"))
