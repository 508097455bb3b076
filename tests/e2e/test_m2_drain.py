"""Draining a real lab host: planned moves, concurrency 2, anti-affinity, and return."""

from __future__ import annotations

import json

import pytest

from fleet.lab.config import LabConfig
from fleet.lab.guests import create_lab_vm
from fleet.lab.services import lab_store
from tests.e2e.helpers import clean_guests, domstate, fleet, running_on

pytestmark = pytest.mark.e2e
NAMES = ["dr-1", "dr-2", "dr-a", "dr-b"]


def test_drain_moves_everything_and_return_brings_it_back(fleet_lab: LabConfig) -> None:
    clean_guests(fleet_lab)
    store = lab_store(fleet_lab)
    for name in NAMES[:2]:
        create_lab_vm(fleet_lab, name, "h1")
    for name in NAMES[2:]:
        create_lab_vm(fleet_lab, name, "h1", group="pair", rule="anti-affinity")
    done = fleet("host", "drain", "h1", "--concurrency", "2", "--wait", "--json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    job = json.loads(done.stdout)
    assert job["state"] == "succeeded" and sorted(job["summary"]["moved"]) == sorted(NAMES)
    where = {name: running_on(fleet_lab, name) for name in NAMES}
    assert all(len(hosts) == 1 and hosts != ["h1"] for hosts in where.values()), where
    assert where["dr-a"] != where["dr-b"]
    listed = fleet("lab", "status", "--json")
    assert listed.returncode == 0
    assert all(domstate(fleet_lab, "h1", name) == "absent" for name in NAMES)
    assert store.get_host("h1").state == "maintenance"
    peak, live = 0, set()
    for _, event in store.events(job["id"]):
        if event["kind"] == "move.dispatched":
            live.add(event["move"])
        elif event["kind"] in ("move.succeeded", "move.failed", "move.pending"):
            live.discard(event["move"])
        peak = max(peak, len(live))
    assert 1 <= peak <= 2

    back = fleet("host", "activate", "h1", "--return", "--wait", "--json")
    assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-3000:]
    assert all(running_on(fleet_lab, name) == ["h1"] for name in NAMES)
    assert store.get_host("h1").state == "active"
