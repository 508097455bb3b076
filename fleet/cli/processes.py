"""Starting and stopping the local processes the demo and tests need.

Only processes started here are ever stopped, by their pid.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

from fleet.core.errors import FleetError, InvalidInput
from fleet.store import redis_answers

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_value(get: Callable[[], T | None], timeout_s: float, what: str,
                   step_s: float = 0.1) -> T:
    """What ``get`` returns once it returns something (not None)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = get()
        if value is not None:
            return value
        time.sleep(step_s)
    raise FleetError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, step_s: float = 0.1,
             ) -> None:
    wait_for_value(lambda: True if check() else None, timeout_s, what, step_s)


@dataclass
class Processes:
    """Child processes started by us, with their logs, stopped by pid on ``stop_all``."""

    log_dir: Path
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None,
              ) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        self._logs.append(log)
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        self.children.append((name, proc))
        return proc

    def fleet(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        return self.spawn(name, [sys.executable, "-m", "fleet.cli.main", *args], env)

    def start_redis(self, persist: bool = False, port: int = 0) -> str:
        """A private redis-server on a loopback port (a free one unless given); its URL.

        Its directory is ``redis-<port>`` under the log directory. With ``persist`` it
        keeps an append-only file synced on every write, so starting it again on the same
        port (after a crash, say) brings back every key.
        """
        binary = shutil.which("redis-server")
        if binary is None:
            raise InvalidInput("no Redis answers and redis-server is not on PATH:"
                               " install it (apt-get install redis-server)")
        port = port or free_port()
        data = self.log_dir / f"redis-{port}"
        data.mkdir(parents=True, exist_ok=True)
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if persist else [
            "--appendonly", "no"]
        self.spawn(f"redis-{port}", [binary, "--port", str(port), "--bind", "127.0.0.1",
                                     "--save", "", *aof, "--dir", str(data)])
        url = f"redis://127.0.0.1:{port}/0"
        wait_for(lambda: redis_answers(url), 10, f"redis-server on port {port}")
        return url

    def named(self, name: str) -> subprocess.Popen[bytes]:
        """The latest child started as ``name`` (Redis: ``redis-<port>``)."""
        for child, proc in reversed(self.children):
            if child == name:
                return proc
        raise InvalidInput(f"no process named {name} was started here")

    def stop(self, proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def stop_all(self) -> None:
        for _, proc in reversed(self.children):
            self.stop(proc)
        self.children.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
