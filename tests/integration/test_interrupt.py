"""Ctrl-C on ``fleet vm migrate --wait``, typed into a real terminal (a detached tmux pane).

The CLI runs as an operator runs it, on a tty, against the sim fleet of ``conftest.py``;
tmux shows what it printed and delivers the Ctrl-C. The job id comes first; a plain
interrupt leaves the job running and names ``fleet job cancel ID``; with
``--cancel-on-interrupt`` the job is cancelled and the VM stays home. Both exit 130.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet.cli.processes import wait_for
from tests.conftest import require
from tests.integration.conftest import Cluster

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
JOB_LINE = re.compile(r"^job ([0-9a-f]{16})\s*$", re.MULTILINE)
EXIT_LINE = re.compile(r"^EXIT=(\d+)\s*$", re.MULTILINE)


@dataclass
class Pane:
    """One detached tmux session on a private tmux server, running one shell command."""

    socket: Path
    session: str

    def tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-S", str(self.socket), *args], capture_output=True,
                              text=True, timeout=10, check=True)
        return done.stdout

    def screen(self) -> str:
        """The pane's text, wrapped lines joined (``-J``)."""
        return self.tmux("capture-pane", "-p", "-J", "-t", self.session)

    def ctrl_c(self) -> None:
        self.tmux("send-keys", "-t", self.session, "C-c")

    def job_id(self) -> str:
        """The job id the CLI printed, once it is on the screen."""
        wait_for(lambda: JOB_LINE.search(self.screen()) is not None, 30,
                 "the job id on the screen")
        found = JOB_LINE.search(self.screen())
        assert found is not None
        return found.group(1)

    def exit_code(self) -> int:
        """The CLI's exit status, once the shell has echoed it."""
        wait_for(lambda: EXIT_LINE.search(self.screen()) is not None, 90,
                 "the CLI to exit")
        found = EXIT_LINE.search(self.screen())
        assert found is not None
        return int(found.group(1))


@contextmanager
def cli_in_tmux(cluster: Cluster, tmp: Path, *args: str) -> Iterator[Pane]:
    """Run ``fleet ARGS`` on a 200x50 tty (tmux server socket in ``tmp``); the pane
    outlives the CLI by 30 s."""
    require(shutil.which("tmux") is not None,
            "tmux is not installed (scripts/install-browser-deps installs it)")
    pane = Pane(socket=tmp / "tmux", session=f"interrupt-{uuid.uuid4().hex[:8]}")
    cli = ["env", *(f"{k}={v}" for k, v in cluster.env.items()),
           sys.executable, "-m", "fleet.cli.main", *args]
    # The Ctrl-C reaches the whole foreground group; the no-op trap keeps the shell alive
    # to echo the status (a handler, unlike an ignored signal, is reset in the child).
    script = f"trap : INT; {shlex.join(cli)}; echo EXIT=$?; sleep 30"
    subprocess.run(["tmux", "-S", str(pane.socket), "new-session", "-d", "-s", pane.session,
                    "-x", "200", "-y", "50", "-c", str(REPO), "sh", "-c", script],
                   check=True, timeout=10)
    try:
        yield pane
    finally:
        subprocess.run(["tmux", "-S", str(pane.socket), "kill-session", "-t", pane.session],
                       capture_output=True, timeout=10, check=False)


def _migrating(cluster: Cluster, job_id: str) -> bool:
    moves = cluster.store.job_moves(cluster.store.get_job(job_id))
    return bool(moves) and moves[0].state == "migrating"


def test_ctrl_c_leaves_the_job_running_and_says_how_to_cancel(cluster: Cluster,
                                                               tmp_path: Path) -> None:
    cluster.add_vm("int-1", "h1", memory_mib=3072, dirty=20)  # about 6 s in the sim
    with cli_in_tmux(cluster, tmp_path, "vm", "migrate", "int-1", "--wait") as pane:
        job_id = pane.job_id()
        wait_for(lambda: _migrating(cluster, job_id), 30, "the move to be under way")
        before = pane.screen()
        pane.ctrl_c()
        code = pane.exit_code()
        after = pane.screen()
    assert f"job {job_id}" in before and "interrupted" not in before
    assert code == 130, after
    assert f"fleet: interrupted: job {job_id} goes on" in after, after
    assert f"`fleet job cancel {job_id}` stops it" in after, after
    assert f"`fleet job watch {job_id}` follows it" in after, after
    wait_for(lambda: cluster.store.get_job(job_id).terminal, 60, "the job to end")
    job = cluster.store.get_job(job_id)
    assert job.state == "succeeded", job
    destination = cluster.store.get_vm("int-1").host
    assert destination in ("h2", "h3")
    assert cluster.where("int-1") == [destination]


def test_cancel_on_interrupt_cancels_and_the_vm_stays(cluster: Cluster, tmp_path: Path,
                                                      ) -> None:
    cluster.add_vm("int-2", "h1", memory_mib=8192, dirty=40)  # far longer than the test
    with cli_in_tmux(cluster, tmp_path, "vm", "migrate", "int-2", "--wait",
                     "--cancel-on-interrupt") as pane:
        job_id = pane.job_id()
        wait_for(lambda: _migrating(cluster, job_id), 30, "the move to be under way")
        pane.ctrl_c()
        code = pane.exit_code()
        after = pane.screen()
        job = cluster.store.get_job(job_id)  # the CLI waited for the end: no wait here
    assert code == 130, after
    assert f"fleet: interrupted: cancelling job {job_id}" in after, after
    assert f"fleet: job {job_id} cancelled" in after, after
    assert job.state == "cancelled", job
    assert [m.state for m in cluster.store.job_moves(job)] == ["cancelled"]
    assert cluster.store.get_vm("int-2").host == "h1"
    wait_for(lambda: cluster.where("int-2") == ["h1"], 30, "the incoming copy to go")
