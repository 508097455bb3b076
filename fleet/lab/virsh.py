"""What ``virsh`` says about lab guests: the independent witness tests and benchmarks
check fleet's records against."""

from __future__ import annotations

import subprocess

from fleet.lab.config import LabConfig


def domstate(cfg: LabConfig, host: str, name: str) -> str:
    """``virsh domstate`` on a lab host: "running", "shut off", ..., "absent" or
    "unreachable" (an isolated host does not answer)."""
    try:
        done = subprocess.run(["virsh", "-c", cfg.uri(host), "domstate", name],
                              capture_output=True, text=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return "unreachable"
    return done.stdout.strip() if done.returncode == 0 else "absent"


def running_on(cfg: LabConfig, name: str, skip: str = "") -> list[str]:
    """Every lab host (but ``skip``) where ``virsh`` says ``name`` is running."""
    return [h for h in cfg.host_names()
            if h != skip and domstate(cfg, h, name) == "running"]
