"""Helpers for e2e tests: the fleet CLI against the lab, its state, and its guests."""

from __future__ import annotations

import os
import subprocess
import sys

from fleet.lab.config import LabConfig
from fleet.lab.guests import qemu_pids
from fleet.lab.guests import remove_all_guests as clean_guests
from fleet.lab.state import LabState, load_state
from fleet.lab.virsh import domstate, running_on

__all__ = ["clean_guests", "domstate", "fleet", "lab_state", "qemu_pids", "running_on"]


def fleet(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run the fleet CLI against the lab (this process's FLEET_* environment)."""
    return subprocess.run([sys.executable, "-m", "fleet.cli.main", *args], env=dict(os.environ),
                          capture_output=True, text=True, timeout=timeout, check=False)


def lab_state(cfg: LabConfig) -> LabState:
    state = load_state(cfg.path)
    assert state is not None, "the lab has no state file"
    return state
