"""fleet on hosts it did not set up: facts, domains and changes read from libvirt.

Guests are defined with plain ``virsh`` and moved or edited behind fleet's back; fleet's
records follow within seconds. The lab's guest network ``fleet-lan`` exists on h1 and h3
only (``lan_missing: h2`` in ``tests/e2e/conftest.py``), so a guest attached to it can
never go to h2: placement's pre-flight says why, and the source agent checks again.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from typing import Any

import pytest

from fleet.lab.config import LabConfig
from fleet.lab.guests import create_lab_vm
from fleet.lab.procs import wait_until
from fleet.lab.services import lab_store
from tests.e2e.conftest import TIMINGS
from tests.e2e.helpers import clean_guests, domstate, fleet, running_on
from tests.e2e.test_m3_failover import _bring_back
from workers.hypervisors.domain_xml import tiny_domain_xml

pytestmark = pytest.mark.e2e

HA_META = ("<metadata><fleet:vm xmlns:fleet='https://fleet.dev/xmlns/vm/1' ha='yes' "
           "priority='3'/></metadata>")


def virsh(cfg: LabConfig, host: str, *args: str) -> str:
    done = subprocess.run(["virsh", "-c", cfg.uri(host), *args], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, f"virsh {' '.join(args)} on {host}: {done.stderr}"
    return done.stdout


def define_by_hand(cfg: LabConfig, host: str, name: str, network: str = "",
                   meta: str = "") -> None:
    """``virsh define`` + ``virsh start`` of a guest fleet knows nothing of."""
    xml = tiny_domain_xml(name, str(uuid.uuid4()), 64, network=network)
    path = cfg.path / "guest" / f"{name}.xml"  # the lab's own files: gone with lab down
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(xml.replace("</domain>", f"{meta}</domain>"))
    virsh(cfg, host, "define", str(path))
    virsh(cfg, host, "start", name)


def vms() -> dict[str, dict[str, Any]]:
    done = fleet("vms", "--json")
    assert done.returncode == 0, done.stderr
    return {v["name"]: v for v in json.loads(done.stdout)}


def recorded(name: str, host: str, state: str = "running") -> bool:
    vm = vms().get(name)
    return vm is not None and (vm["host"], vm["state"]) == (host, state)


def _json(*args: str) -> Any:
    done = fleet(*args, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_host_facts_come_from_libvirt(fleet_lab: LabConfig) -> None:
    nodeinfo = dict(line.split(":", 1) for line in virsh(fleet_lab, "h1", "nodeinfo")
                    .splitlines() if ":" in line)
    node = _json("host", "show", "h1")["node"]
    assert node["cpus"] == int(nodeinfo["CPU(s)"])
    assert node["memory_mib"] == int(nodeinfo["Memory size"].split()[0]) // 1024
    assert node["arch"] == "x86_64" and node["machines"] and node["numa_cells"]
    assert "fleet-lan" in node["networks"]
    assert "fleet-lan" not in _json("host", "show", "h2")["node"]["networks"]


def test_a_guest_defined_by_hand_is_adopted_placed_and_drained(fleet_lab: LabConfig) -> None:
    clean_guests(fleet_lab)
    started = time.monotonic()
    define_by_hand(fleet_lab, "h1", "hand-a", network="fleet-lan", meta=HA_META)
    wait_until(lambda: recorded("hand-a", "h1"), 30.0, "hand-a adopted", interval_s=0.2)
    TIMINGS["virsh start by hand -> in fleet vms"] = time.monotonic() - started
    vm = _json("vm", "show", "hand-a")
    assert vm["ha"] is True and vm["priority"] == 3 and "net:fleet-lan" in vm["needs"]
    assert vm["devices"]["nics"][0]["network"] == "fleet-lan"

    why = _json("vm", "explain", "hand-a")
    assert why["host"] == "h3"
    assert any("network fleet-lan is not active there" in r for r in why["rejected"]["h2"])

    refused = fleet("vm", "migrate", "hand-a", "--to", "h2", "--wait", "--json")
    assert refused.returncode != 0  # the operator's own target fails the source's check
    assert "network fleet-lan is not active there" in refused.stdout + refused.stderr
    assert running_on(fleet_lab, "hand-a") == ["h1"]

    moved = _json("vm", "migrate", "hand-a", "--wait")
    assert moved["state"] == "succeeded" and moved["moves"][0]["destination"] == "h3"
    assert running_on(fleet_lab, "hand-a") == ["h3"] and recorded("hand-a", "h3")

    drained = _json("host", "drain", "h3", "--wait")
    assert drained["state"] == "succeeded", drained
    assert running_on(fleet_lab, "hand-a") == ["h1"] and recorded("hand-a", "h1")
    assert fleet("host", "activate", "h3").returncode == 0


def test_a_guest_defined_by_hand_fails_over(fleet_lab: LabConfig) -> None:
    if not recorded("hand-a", "h1"):
        define_by_hand(fleet_lab, "h1", "hand-a", network="fleet-lan", meta=HA_META)
        wait_until(lambda: recorded("hand-a", "h1"), 30.0, "hand-a adopted")
    assert fleet("lab", "kill", "h1").returncode == 0
    wait_until(lambda: running_on(fleet_lab, "hand-a", skip="h1") == ["h3"], 90.0,
               "hand-a restarted on h3 (the only other host with its network)",
               interval_s=0.2)
    wait_until(lambda: recorded("hand-a", "h3"), 30.0, "hand-a recorded on h3")
    _bring_back(fleet_lab, "h1")
    wait_until(lambda: domstate(fleet_lab, "h1", "hand-a") == "absent", 30.0,
               "h1's stale definition of hand-a to be undefined")


def test_an_out_of_band_migration_is_followed(fleet_lab: LabConfig) -> None:
    create_lab_vm(fleet_lab, "oob-1", "h1")
    started = time.monotonic()
    virsh(fleet_lab, "h1", "migrate", "--live", "--p2p", "--persistent", "--undefinesource",
          "oob-1", fleet_lab.uri("h2"))
    wait_until(lambda: recorded("oob-1", "h2"), 30.0, "oob-1's record to follow",
               interval_s=0.2)
    TIMINGS["virsh migrate out of band -> record follows"] = time.monotonic() - started
    audit = lab_store(fleet_lab).journal.audit()
    assert any(e["kind"] == "vm.observed" and e.get("change") == "moved"
               and e["vm"] == "oob-1" and e["by"] == "h2" for _, e in audit)
    for host in ("h2", "h1"):  # where it went, and where fleet had it before
        drained = _json("host", "drain", host, "--wait")
        assert drained["state"] == "succeeded", drained
        (where,) = running_on(fleet_lab, "oob-1")
        assert where != host and recorded("oob-1", where)
        assert fleet("host", "activate", host).returncode == 0


def test_an_edited_stopped_ha_guest_restarts_with_its_new_definition(
        fleet_lab: LabConfig) -> None:
    create_lab_vm(fleet_lab, "edit-1", "h3", ha=True, memory_mib=64)
    store = lab_store(fleet_lab)
    assert fleet("vm", "stop", "edit-1", "--timeout", "1").returncode == 0
    wait_until(lambda: recorded("edit-1", "h3", "stopped"), 30.0, "edit-1 stopped")
    before = store.get_vm("edit-1").definition_version
    virsh(fleet_lab, "h3", "setmaxmem", "edit-1", "96M", "--config")
    virsh(fleet_lab, "h3", "setmem", "edit-1", "96M", "--config")
    wait_until(lambda: store.get_vm("edit-1").memory_mib == 96, 30.0, "the edit to be read")
    assert store.get_vm("edit-1").definition_version > before
    assert fleet("vm", "start", "edit-1").returncode == 0
    wait_until(lambda: recorded("edit-1", "h3"), 30.0, "edit-1 running")
    assert fleet("lab", "kill", "h3").returncode == 0
    wait_until(lambda: len(running_on(fleet_lab, "edit-1", skip="h3")) == 1, 90.0,
               "edit-1 restarted elsewhere", interval_s=0.2)
    (where,) = running_on(fleet_lab, "edit-1", skip="h3")
    assert "98304 KiB" in virsh(fleet_lab, where, "dominfo", "edit-1")  # 96 MiB
    _bring_back(fleet_lab, "h3")


def test_the_store_is_rebuilt_from_the_hosts_after_redis_lost_its_data(
        fleet_lab: LabConfig) -> None:
    guests = {h: sorted(virsh(fleet_lab, h, "list", "--name").split())  # running ones
              for h in fleet_lab.host_names()}
    assert sum(map(len, guests.values())) >= 3, guests
    ha = {n for n, v in vms().items() if v["ha"]}
    lost = time.monotonic()
    subprocess.run(["redis-cli", "-h", fleet_lab.bridge_address, "-p",
                    str(fleet_lab.redis_port), "FLUSHALL"], check=True, capture_output=True)

    def rebuilt() -> bool:
        seen = vms()
        return all(seen.get(n, {}).get("host") == h for h, names in guests.items()
                   for n in names)

    wait_until(rebuilt, 60.0, "every guest back in fleet vms where it runs", interval_s=0.2)
    TIMINGS["Redis flushed -> every guest listed again"] = time.monotonic() - lost
    assert {h["name"] for h in _json("hosts")} == set(fleet_lab.host_names())
    assert {n for n, v in vms().items() if v["ha"]} == ha  # from the definitions' metadata
