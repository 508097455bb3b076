"""Thread-aware process checks, and the lab's power switch that relies on them.

The case that matters: a process whose main thread has exited (``/proc/PID/stat`` says
``Z``, ``ip netns pids`` does not list it) while another thread still runs and still
holds a listening socket. SIGKILLed libvirtd and QEMU pass through that state; power-off
must not be confirmed during it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from workers.fencing.base import PowerState
from workers.fencing.lab import LabFenceAgent
from workers.procfs import alive, netns_processes, processes_in

# The main thread leaves with pthread_exit; a second thread sleeps on, holding the socket.
HALF_DEAD = """
import ctypes, socket, sys, threading, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
threading.Thread(target=lambda: time.sleep(600)).start()
time.sleep(0.1)
ctypes.CDLL(None).pthread_exit(None)
"""


def _leader_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]


def _start_half_dead(prefix: list[str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([*prefix, sys.executable, "-c", HALF_DEAD], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    deadline = time.monotonic() + 10
    while _leader_state(proc.pid) != "Z":
        assert time.monotonic() < deadline, "the main thread never exited"
        time.sleep(0.02)
    return proc, port


@pytest.fixture
def half_dead() -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc, port = _start_half_dead([])
    yield proc, port
    proc.kill()
    proc.wait(10)


def test_a_zombie_main_thread_with_live_threads_is_alive(
        half_dead: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = half_dead
    assert _leader_state(proc.pid) == "Z"
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # its socket still answers: the process is not gone
    assert alive(proc.pid)
    assert proc.pid in processes_in("/proc/self/ns/net")
    proc.kill()
    proc.wait(10)
    assert not alive(proc.pid)
    assert proc.pid not in processes_in("/proc/self/ns/net")


def test_plain_processes() -> None:
    assert alive(os.getpid())
    assert os.getpid() in processes_in("/proc/self/ns/net")
    assert not alive(0)
    assert not alive(2**22 + 1)  # above pid_max's ceiling: no such process
    assert processes_in("/nonexistent/ns") == []
    assert netns_processes(f"fleet-no-such-{uuid.uuid4().hex[:8]}") == []


def test_lab_switch_confirms_off_only_when_no_thread_is_left() -> None:
    require(os.geteuid() == 0, "network namespaces need root")
    ns = f"fleet-pt-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        proc, _ = _start_half_dead(["ip", "netns", "exec", ns])
        listed = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                                check=True).stdout.split()
        assert str(proc.pid) not in listed  # what the old check relied on: it sees nothing
        agent = LabFenceAgent(netns=ns)
        assert agent.power_state("h") is PowerState.ON
        agent.power_off("h")
        proc.wait(10)
        deadline = time.monotonic() + 10
        while agent.power_state("h") is PowerState.ON:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert not alive(proc.pid)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
