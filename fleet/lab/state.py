"""The lab's state file: its configuration and every pid it started, as JSON.

``state.json`` under the lab directory is written atomically; ``locked`` serialises
commands that change the lab (``up``, ``down``, ``kill``...) with an flock.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fleet.lab.config import LabConfig


@dataclass
class HostPids:
    """Processes of one lab host (0: not running or unknown)."""

    holder: int = 0
    virtlogd: int = 0
    libvirtd: int = 0
    agent: int = 0


@dataclass
class LabState:
    """What ``up`` built: the configuration it used and the pids it started."""

    config: LabConfig
    hosts: dict[str, HostPids] = field(default_factory=dict)
    redis: int = 0
    controller: int = 0
    monitor: int = 0
    flower: int = 0

    def host(self, name: str) -> HostPids:
        return self.hosts.setdefault(name, HostPids())

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "redis": self.redis,
                "controller": self.controller, "monitor": self.monitor, "flower": self.flower,
                "hosts": {name: asdict(pids) for name, pids in self.hosts.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabState:
        hosts = {name: HostPids(**pids) for name, pids in data.get("hosts", {}).items()}
        return cls(LabConfig.from_dict(data["config"]), hosts, int(data.get("redis", 0)),
                   int(data.get("controller", 0)), int(data.get("monitor", 0)),
                   int(data.get("flower", 0)))


def load_state(root: Path) -> LabState | None:
    """The state of the lab under ``root``, or None if there is none (or it is unreadable)."""
    try:
        data = json.loads((root / "state.json").read_text())
        return LabState.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_state(state: LabState) -> None:
    path = state.config.state_file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_dict(), indent=2) + "\n")
    os.replace(tmp, path)


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the lab's lock (a file next to the lab directory, so ``down`` may remove it)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    lock_path = root.parent / f".{root.name}.lock"
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
