"""Throughput of the random-interleavings property test: fleet's real executors in random
orders against a real redis-server, every invariant checked after every step.

Run from the repository root::

    python -m bench.interleavings [--examples N] [--workers W] [--steps S]
                                  [--redis-url URL | --unix]

Runs ``N`` examples (default 100,000) of ``tests.integration.fleet_machine`` split over
``W`` processes (default: one per core), ``S`` steps each (default 20, as the test).
Every process runs ``run_state_machine_as_test`` with generation only (no database, no
shrinking); processes never share keys (every fleet's prefix holds its process id).
Without ``--redis-url`` it starts a private redis-server (no persistence) on a free
loopback port, as ``test_interleavings`` does (``--unix``: on a Unix socket too, and
talks to it there), and stops it at the end. Prints examples run, steps, invariant
violations (the failing example, if any), wall seconds, examples per second, CPU per
example (test processes and redis-server) and the machine; exits 1 on a violation.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from fleet.cli.processes import free_port, wait_for
from fleet.store import redis_answers
from tests.integration.fleet_machine import FleetMachine, machine


@dataclass
class Share:
    """What one process ran."""

    examples: int = 0
    steps: int = 0
    failure: str = ""
    cpu_s: float = 0.0


def counting(url: str, share: Share) -> type[FleetMachine]:
    """The machine bound to ``url``, counting into ``share`` its examples and steps."""
    base = machine(url)

    class Counted(base):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:
            super().__init__()
            share.examples += 1

        def check_invariants(self, *args: Any, **kwargs: Any) -> None:
            share.steps += 1  # after the setup, then after every step
            super().check_invariants(*args, **kwargs)

    return Counted


def run_share(url: str, examples: int, steps: int) -> Share:
    """One process's examples; a violation is kept as its report, not raised."""
    share, started = Share(), time.process_time()
    test_settings = settings(max_examples=examples, stateful_step_count=steps,
                             deadline=None, database=None,
                             suppress_health_check=list(HealthCheck),
                             phases=[Phase.generate])
    try:
        run_state_machine_as_test(counting(url, share), settings=test_settings)
    except Exception as exc:  # the failing example: Hypothesis printed its steps
        share.failure = "".join(traceback.format_exception(exc))
    share.steps -= share.examples  # the check after each setup is no step
    share.cpu_s = time.process_time() - started
    return share


@contextmanager
def redis_server(unix: bool) -> Iterator[str]:
    """A private redis-server for the duration: its port's URL (``unix``: its socket's)."""
    with tempfile.TemporaryDirectory(prefix="bench-interleavings-") as data:
        port, sock = free_port(), Path(data) / "redis.sock"
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--unixsocket",
             str(sock), "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
             "--dir", data], stdout=subprocess.DEVNULL, start_new_session=True)
        url = f"unix://{sock}?db=0" if unix else f"redis://127.0.0.1:{port}/0"
        try:
            wait_for(lambda: redis_answers(url), 10, f"redis-server on port {port}")
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


@contextmanager
def redis_at(url: str, unix: bool) -> Iterator[str]:
    """``url`` if given, else a private redis-server's."""
    if url:
        yield url
    else:
        with redis_server(unix) as own:
            yield own


def split(total: int, workers: int) -> list[int]:
    """``total`` examples over ``workers`` processes, none empty."""
    workers = max(1, min(workers, total))
    return [total // workers + (1 if k < total % workers else 0) for k in range(workers)]


def run(url: str, examples: int, workers: int, steps: int) -> list[Share]:
    shares = split(examples, workers)
    if len(shares) == 1:
        return [run_share(url, shares[0], steps)]
    with ProcessPoolExecutor(len(shares)) as pool:
        futures = [pool.submit(run_share, url, n, steps) for n in shares]
        return [f.result() for f in futures]


def server_cpu_s(url: str) -> float:
    """CPU seconds the Redis server at ``url`` has used so far."""
    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def cpu_model() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    return names[0] if names else platform.processor() or "?"


def report(shares: list[Share], url: str, seconds: float, server_s: float) -> int:
    examples = sum(s.examples for s in shares)
    failures = [s.failure for s in shares if s.failure]
    for failure in failures:
        print(failure, file=sys.stderr)
    per = 1000 / max(1, examples)
    print(f"examples run:          {examples}")
    print(f"steps:                 {sum(s.steps for s in shares)}")
    print(f"invariant violations:  {len(failures)}")
    print(f"wall seconds:          {seconds:.1f}")
    print(f"examples/s:            {examples / seconds:.1f}")
    print(f"CPU ms per example:    {per * sum(s.cpu_s for s in shares):.1f} (test processes),"
          f" {per * server_s:.1f} (redis-server)")
    print(f"machine:               {os.cpu_count()} cores ({cpu_model()}), Python"
          f" {platform.python_version()}, {len(shares)} worker processes, Redis at {url}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--redis-url", default="",
                        help="an existing Redis (default: a private redis-server)")
    parser.add_argument("--unix", action="store_true",
                        help="talk to the private redis-server over a Unix socket")
    args = parser.parse_args(argv)
    with redis_at(args.redis_url, args.unix) as url:
        started, server = time.monotonic(), server_cpu_s(url)
        shares = run(url, args.examples, args.workers, args.steps)
        seconds = time.monotonic() - started
        return report(shares, url, seconds, server_cpu_s(url) - server)


if __name__ == "__main__":
    sys.exit(main())
