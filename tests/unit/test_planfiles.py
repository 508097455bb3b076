"""Inventory files and the ``fleet plan`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleet.cli.plan import plan_app
from fleet.core.errors import InvalidInput
from fleet.core.planmodel import NumaCell, PlanHost, PlanVM
from fleet.planfiles import (
    HOST_FIELDS,
    VM_FIELDS,
    host_record,
    read_hosts,
    read_inventory,
    read_vms,
    vm_record,
    write_csv,
    write_json,
)

HOSTS = [PlanHost("h1", 8, 8192, labels={"ssd": "yes"}, rack="r1", arch="x86_64",
                  cpu_models=frozenset({"Skylake"}), gpus=2,
                  numa_cells=(NumaCell(4, 4096), NumaCell(4, 4096))),
         PlanHost("h2", 8, 8192, rack="r2", state="maintenance"),
         PlanHost("h3", 4.5, 4096, disk_gib=100)]
VMS = [PlanVM("a", 2, 2048, host="h1", group="web", rule="anti-affinity", numa=1, cells=(1,),
              gpus=0.5, devices=(0,)),
       PlanVM("b", 0.5, 512, host="h1", group="web", rule="anti-affinity", numa=2, gpus=2),
       PlanVM("c", 1, 1024, host="h3", group="fd", rule="fault-domain", domain="1",
              required_labels={"ssd": "yes"})]


def test_json_and_csv_round_trip(tmp_path: Path) -> None:
    write_json(tmp_path / "inv.json", HOSTS, VMS)
    inv = read_inventory(tmp_path / "inv.json")
    assert inv.hosts == HOSTS and inv.vms == VMS
    d = tmp_path / "dir"
    d.mkdir()
    write_csv(d / "hosts.csv", [host_record(h) for h in HOSTS], HOST_FIELDS)
    write_csv(d / "vms.csv", [vm_record(v) for v in VMS], VM_FIELDS)
    inv = read_inventory(d)
    assert inv.hosts == HOSTS and inv.vms == VMS
    assert read_hosts(d / "hosts.csv") == HOSTS


def test_minimal_csv_and_group_without_rule(tmp_path: Path) -> None:
    (tmp_path / "vms.csv").write_text("name,vcpus,memory_mib,group\nx,1,512,g\ny,2,1024,\n")
    vms = read_vms(tmp_path / "vms.csv")
    assert vms[0].rule == "anti-affinity" and vms[1].group == ""


@pytest.mark.parametrize(("name", "text", "message"), [
    ("h.csv", "name,vcpus\nh1,4\n", "missing column 'memory_mib'"),
    ("h.csv", "name,vcpus,memory_mib\nh1,four,1024\n", "line 2: vcpus must be a number"),
    ("h.csv", "name,vcpus,memory_mib\nh1,4,10.5\n", "memory_mib must be a whole number"),
    ("h.csv", "name,vcpus,memory_mib\nh1,-4,1024\n", "vcpus must be a number >= 0"),
    ("h.csv", "name,vcpus,memory_mib\nh1,4,1024\nh1,4,1024\n", "host 'h1' appears twice"),
    ("h.csv", "name,vcpus,memory_mib,state\nh1,4,1024,broken\n", "state must be one of"),
    ("h.csv", "name,vcpus,memory_mib,labels\nh1,4,1024,oops\n", "labels must look like"),
    ("h.json", "{not json", "not valid JSON"),
    ("h.json", '{"hosts": 3}', "expected a JSON list of hosts"),
    ("h.json", '[{"name": "h1", "vcpus": 4}]', "hosts item 1: missing memory_mib"),
    ("h.json", '[{"vcpus": 4, "memory_mib": 5}]', "missing name"),
    ("h.csv", "name,vcpus,memory_mib,numa_cells\nh1,4,1024,2:512;1:512\n",
     "numa_cells must add up to vcpus 4 and memory_mib 1024"),
    ("h.csv", "name,vcpus,memory_mib,numa_cells\nh1,4,1024,4:lots\n",
     "numa_cells item 1: memory_mib must be a number"),
    ("h.json", '[{"name": "h", "vcpus": 4, "memory_mib": 5, "numa_cells": 3}]',
     "numa_cells must be a list"),
    ("h.csv", "name,vcpus,memory_mib,gpus\nh1,4,1024,0.5\n", "gpus must be a whole number"),
])
def test_bad_host_files_give_one_line(tmp_path: Path, name: str, text: str,
                                      message: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(InvalidInput) as err:
        read_hosts(tmp_path / name)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("text", "message"), [
    ("name,vcpus,memory_mib,rule\nx,1,512,affinity\n", "needs a group"),
    ("name,vcpus,memory_mib,group,rule\nx,1,512,g,sideways\n", "rule must be one of"),
    ("name,vcpus,memory_mib\nx,0,512\n", "vcpus must be > 0"),
    ("name,vcpus,memory_mib,group,rule\nx,1,5,g,affinity\ny,1,5,g,anti-affinity\n",
     "mixes rules"),
    ("name,vcpus,memory_mib,gpus\nx,1,512,1.5\n", "gpus must be below 1"),
    ("name,vcpus,memory_mib,numa\nx,1,512,-1\n", "numa must be a number >= 0"),
    ("name,vcpus,memory_mib,numa,cells\nx,1,512,1,0\n", "cells must name 1 distinct"),
    ("name,vcpus,memory_mib,host,numa,cells\nx,1,512,h,1,0;1\n", "cells must name 1"),
    ("name,vcpus,memory_mib,host,gpus,devices\nx,1,512,h,2,0;0\n",
     "devices must name 2 distinct"),
])
def test_bad_vm_files(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "v.csv").write_text(text)
    with pytest.raises(InvalidInput, match=message):
        read_vms(tmp_path / "v.csv")


def test_inventory_checks_hosts_and_missing_files(tmp_path: Path) -> None:
    write_json(tmp_path / "inv.json", HOSTS, [PlanVM("z", 1, 1, host="ghost")])
    with pytest.raises(InvalidInput, match="unknown host 'ghost'"):
        read_inventory(tmp_path / "inv.json")
    with pytest.raises(InvalidInput, match="no such file"):
        read_hosts(tmp_path / "missing.csv")
    with pytest.raises(InvalidInput, match=r"no hosts\.json or hosts\.csv"):
        read_inventory(tmp_path)
    write_json(tmp_path / "dev.json", HOSTS, [PlanVM("z", 1, 1, host="h1", gpus=1,
                                                     devices=(2,))])
    with pytest.raises(InvalidInput, match="names a device 'h1' lacks"):
        read_inventory(tmp_path / "dev.json")
    write_json(tmp_path / "cell.json", HOSTS, [PlanVM("z", 1, 1, host="h3", numa=1,
                                                      cells=(0,))])
    with pytest.raises(InvalidInput, match="names a NUMA node 'h3' lacks"):
        read_inventory(tmp_path / "cell.json")


# ------------------------------------------------------------------ commands
def _run(*args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(plan_app, list(args))
    return result.exit_code, result.output, result.exception


def test_place_command(tmp_path: Path) -> None:
    write_json(tmp_path / "hosts.json", hosts=HOSTS)
    write_json(tmp_path / "vms.json", vms=[PlanVM("n1", 4, 4096), PlanVM("n2", 64, 1024),
                                           PlanVM("n3", 1, 100, host="h1")])
    code, out, _ = _run("place", "--hosts", str(tmp_path / "hosts.json"),
                        "--vms", str(tmp_path / "vms.json"), "--json")
    data = json.loads(out)
    assert code == 0 and data["requests"] == 2 and data["placed"] == 1
    assert data["placements"][0]["host"] in {"h1", "h3"}
    assert data["placements"][1]["reasons"]
    code, out, _ = _run("place", "--hosts", str(tmp_path / "hosts.json"),
                        "--vms", str(tmp_path / "vms.json"))
    assert code == 0 and "placed 1 of 2 requests" in out


def test_place_command_reports_cells_and_devices(tmp_path: Path) -> None:
    write_json(tmp_path / "hosts.json", hosts=HOSTS[:1])
    write_json(tmp_path / "vms.json", vms=[PlanVM("p", 2, 2048, numa=1, gpus=1),
                                           PlanVM("q", 5, 1024, numa=1)])
    code, out, _ = _run("place", "--hosts", str(tmp_path / "hosts.json"),
                        "--vms", str(tmp_path / "vms.json"), "--json")
    first, second = json.loads(out)["placements"]
    assert code == 0 and first["cells"] == [0] and first["devices"] == [0]
    assert second["host"] is None and second["reasons"][0].startswith("numa rejects 1 of 1 host")


def test_drain_and_capacity_commands(tmp_path: Path) -> None:
    hosts = [PlanHost("h1", 8, 8192), PlanHost("h2", 8, 8192), PlanHost("h3", 8, 8192)]
    vms = [PlanVM("a", 2, 2048, host="h1"), PlanVM("b", 2, 2048, host="h1")]
    write_json(tmp_path / "inv.json", hosts, vms)
    code, out, _ = _run("drain", "--inventory", str(tmp_path / "inv.json"), "--host", "h1",
                        "--json")
    plan = json.loads(out)
    assert code == 0 and plan["complete"] and len(plan["moves"]) == 2
    code, out, _ = _run("capacity", "--inventory", str(tmp_path / "inv.json"), "--json")
    assert code == 0 and json.loads(out)["n_plus_1"] is True
    code, out, _ = _run("drain", "--inventory", str(tmp_path / "inv.json"), "--host", "h1")
    assert code == 0 and "2 moves" in out
    write_json(tmp_path / "tight.json", [*hosts[:1], PlanHost("h2", 1, 1024)], vms)
    code, out, _ = _run("drain", "--inventory", str(tmp_path / "tight.json"), "--host", "h1")
    assert code == 1 and "cannot place" in out
    code, out, _ = _run("capacity", "--inventory", str(tmp_path / "tight.json"))
    assert code == 1 and "fails for 1 hosts" in out


def test_commands_raise_invalid_input(tmp_path: Path) -> None:
    write_json(tmp_path / "inv.json", [PlanHost("h1", 8, 8192)], [])
    _, _, exc = _run("drain", "--inventory", str(tmp_path / "inv.json"), "--host", "zz")
    assert isinstance(exc, InvalidInput) and "unknown host 'zz'" in str(exc)
    _, _, exc = _run("place", "--hosts", str(tmp_path / "nope.csv"), "--vms", "x.csv")
    assert isinstance(exc, InvalidInput)
    _, _, exc = _run("capacity", "--inventory", str(tmp_path / "inv.json"), "--policy", "odd")
    assert isinstance(exc, InvalidInput)
