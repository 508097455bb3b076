"""The last e2e test: taking the lab down leaves nothing behind (runs after all others)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from fleet.lab import lab, network
from fleet.lab.config import LabConfig
from fleet.lab.procs import alive
from fleet.lab.state import load_state

pytestmark = pytest.mark.e2e


def test_zz_down_leaves_nothing_behind(lab_cfg: LabConfig, timings: dict[str, float]) -> None:
    state = load_state(lab_cfg.path)
    assert state is not None
    pids = [state.redis, state.controller, state.monitor, state.flower] + [
        p for h in state.hosts.values() for p in (h.holder, h.virtlogd, h.libvirtd, h.agent)]
    started = time.monotonic()
    lab.down(lab_cfg.path, expected=lab_cfg)
    timings["lab down"] = time.monotonic() - started
    assert not any(alive(p) for p in pids)
    assert lab.lab_netns_hosts(lab_cfg) == []
    assert not network.link_exists(lab_cfg.bridge)
    assert not any(network.link_exists(lab_cfg.veth(h)) for h in lab_cfg.host_names())
    assert not Path(lab_cfg.root).exists()
    lab.down(lab_cfg.path, expected=lab_cfg)  # idempotent
    assert not any(lab_cfg.subnet in line for line in
                   subprocess.run(["ip", "route"], capture_output=True, text=True,
                                  check=True).stdout.splitlines())
