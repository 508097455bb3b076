"""Helpers for e2e tests: the fleet CLI against the lab, its state, and its guests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from fleet.lab.config import LabConfig
from fleet.lab.guests import qemu_pids
from fleet.lab.guests import remove_all_guests as clean_guests
from fleet.lab.state import LabState, load_state
from fleet.lab.virsh import domstate, running_on
from fleet.store import Store

__all__ = ["clean_guests", "domstate", "explained", "fleet", "job_story", "lab_state",
           "qemu_pids", "running_on"]


def fleet(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run the fleet CLI against the lab (this process's FLEET_* environment)."""
    return subprocess.run([sys.executable, "-m", "fleet.cli.main", *args], env=dict(os.environ),
                          capture_output=True, text=True, timeout=timeout, check=False)


def lab_state(cfg: LabConfig) -> LabState:
    state = load_state(cfg.path)
    assert state is not None, "the lab has no state file"
    return state


def job_story(store: Store, job_id: str) -> str:
    """A job's events, one a line, without its progress samples."""
    lines = []
    for _, event in store.events(job_id):
        if event["kind"] == "move.progress":
            continue
        fields = {k: v for k, v in event.items() if k not in ("kind", "job", "at")}
        lines.append(f"{event['at']:.3f} {event['kind']} {json.dumps(fields, default=str)}")
    return "\n".join(lines) or "(no events)"


@contextmanager
def explained(store: Store, job_id: str, *context: object) -> Iterator[None]:
    """A failed assertion inside also shows ``context`` and the job's events."""
    try:
        yield
    except AssertionError as exc:
        seen = "\n".join(map(str, context))
        raise AssertionError(f"{exc}\n--- seen:\n{seen}\n--- events of job {job_id}:\n"
                             f"{job_story(store, job_id)}") from None
