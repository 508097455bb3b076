"""Chaos on the lab: faults injected into a fleet of real QEMU guests, and what they cost.

    sudo .venv/bin/python -m bench.chaos [--runs N] [--scenario NAME ...] [--json] [--keep]

Builds (or reuses) its own 3-host lab — own directory, bridge, subnet, Redis port and
namespace names, never those of the e2e or benchmark labs — and runs each scenario N
times at fleet's default settings. During a run a ``CopyWatch`` samples every host's
libvirt every 0.1 s (a host whose libvirtd is down: its guests' QEMU processes). After
the fault the fleet is left to settle (every job of the run ended, bounded), the lab is
restored (``lab up``, hosts activated) and the run is judged on what libvirt says:

- VMs lost: ran before the fault, run nowhere now, and fleet does not report them down;
- seconds with two running copies (the longest of the run's guests);
- wrong records: the VM record does not name the one host where the guest runs.

Floor: 0 lost, 0 wrong records, two copies at most 3 s where libvirt itself made them
(the destination's libvirtd killed right after it resumed the guest) and 0 elsewhere.
Prints a Markdown table (``--json``: every run) and takes the lab down unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial

from fleet.core.models import Move
from fleet.lab import lab
from fleet.lab.config import LabConfig
from fleet.lab.faults import (
    CopyWatch,
    Moment,
    dead_processes,
    kill_agent,
    kill_libvirtd,
    kill_service,
    restart_agent,
    restart_control,
    restart_redis,
    restore,
    running_copies,
    strike,
)
from fleet.lab.guests import create_lab_vm, remove_all_guests
from fleet.lab.procs import wait_until
from fleet.lab.services import lab_store
from fleet.store import Store

CHAOS_LAB = {"root": "/var/lib/fleet-lab-chaos", "hosts": 3, "bridge": "flcbr0",
             "subnet": "10.77.7", "redis_port": 6397, "prefix": "chaos",
             "netns_prefix": "flc-", "veth_prefix": "flc-", "flower_port": 5597}
BOOT_S = 8.0  # an OS guest boots under TCG and fills its memory
BANDWIDTH = "24"  # MiB/s: a 256 MiB guest migrates in about 6 s
SETTLE_S = 300.0
CONVERGE_S = 30.0
LIBVIRT_MADE_MAX_S = 3.0
FAILING_OVER = ("suspect", "down", "fencing", "fenced", "recovering")


def fleet(*args: str) -> str:
    """Run the fleet CLI against the chaos lab; its stdout (exit on failure)."""
    done = subprocess.run([sys.executable, "-m", "fleet.cli.main", *args], env=dict(os.environ),
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"fleet {' '.join(args)}: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


@dataclass
class Run:
    """One run of a scenario: the lab, its guests and what was noticed on the way."""

    cfg: LabConfig
    store: Store
    guests: list[str] = field(default_factory=list)
    watch: CopyWatch | None = None
    notes: list[str] = field(default_factory=list)

    def guest(self, name: str, host: str, os_guest: bool = False, ha: bool = False) -> None:
        create_lab_vm(self.cfg, name, host, os_guest=os_guest, dirty_mib_s=4, ha=ha)
        if os_guest:
            fleet("vm", "policy", name, "--bandwidth-mib-s", BANDWIDTH)
        self.guests.append(name)


# -- guests of the scenarios -------------------------------------------------------------
def one_migration(run: Run, ha: bool = False) -> None:
    """A Linux guest on h1 to migrate to h2, and a tiny bystander on h2."""
    run.guest("cx-mig", "h1", os_guest=True, ha=ha)
    run.guest("cx-by", "h2", ha=ha)


def drain_load(run: Run) -> None:
    """Two Linux and two tiny guests on h1, to drain."""
    for name in ("cx-d1", "cx-d2"):
        run.guest(name, "h1", os_guest=True)
    for name in ("cx-t1", "cx-t2"):
        run.guest(name, "h1")


def failover_load(run: Run) -> None:
    """HA guests on h3 (one Linux, two tiny), to lose with their host."""
    run.guest("cx-f1", "h3", os_guest=True, ha=True)
    for name in ("cx-f2", "cx-f3"):
        run.guest(name, "h3", ha=True)


def two_drains_load(run: Run) -> None:
    """h1: two Linux guests and a tiny one; h2: a tiny one; h3: a Linux and a tiny one
    (so h2, the emptiest, receives from h1's drain)."""
    for name in ("cx-a1", "cx-a2"):
        run.guest(name, "h1", os_guest=True)
    run.guest("cx-a3", "h1")
    run.guest("cx-b1", "h2")
    run.guest("cx-c1", "h3", os_guest=True)
    run.guest("cx-c2", "h3")


# -- faults ------------------------------------------------------------------------------
def migrate(run: Run, name: str = "cx-mig", to: str = "h2") -> str:
    return fleet("vm", "migrate", name, "--to", to)


def agent_kill(run: Run) -> None:
    """h1's agent SIGKILLed mid-migration and started again at once."""
    migrate(run)
    strike(run.cfg, "cx-mig", "h1", "h2", Moment.MID, lambda: kill_agent(run.cfg, "h1"),
           run.watch)
    restart_agent(run.cfg, "h1")


def dest_libvirtd(moment: Moment, run: Run) -> None:
    """h2's libvirtd SIGKILLed at ``moment`` of the migration h1→h2, back after 1 s."""
    migrate(run)
    hit = strike(run.cfg, "cx-mig", "h1", "h2", moment,
                 lambda: kill_libvirtd(run.cfg, "h2"), run.watch)
    run.notes.append(f"at the kill: source {hit.source}, destination {hit.destination}")
    time.sleep(1.0)
    restore(run.cfg)


def source_power_loss(run: Run) -> None:
    """h1 loses power (``fleet lab kill``) mid-migration of an HA guest to h2."""
    migrate(run)
    strike(run.cfg, "cx-mig", "h1", "h2", Moment.MID,
           lambda: lab.kill_host(run.cfg.path, "h1"), run.watch)


def moving(store: Store, job_id: str, to: str = "") -> Move | None:
    """A move of the job that is migrating with progress (to ``to``, if given)."""
    for move in store.job_moves(store.get_job(job_id)):
        if move.state == "migrating" and move.progress.get("percent", 0) >= 10 \
                and (not to or move.destination == to):
            return move
    return None


def mid_drain(run: Run) -> str:
    job_id = fleet("host", "drain", "h1", "--concurrency", "2")
    wait_until(lambda: moving(run.store, job_id) is not None, 120.0, "a drain move migrating",
               interval_s=0.05)
    return job_id


def redis_kill(run: Run) -> None:
    """The lab's Redis SIGKILLed mid-drain and started again 2 s later (AOF reloaded)."""
    mid_drain(run)
    kill_service(run.cfg, "redis")
    time.sleep(2.0)
    restart_redis(run.cfg)
    time.sleep(10.0)
    if dead := dead_processes(run.cfg):
        run.notes.append(f"dead 10 s after Redis came back: {', '.join(dead)}")


def controller_kill(run: Run) -> None:
    """The controller SIGKILLed mid-drain and started again 1 s later."""
    mid_drain(run)
    kill_service(run.cfg, "controller")
    time.sleep(1.0)
    restart_control(run.cfg)


def monitor_kill(run: Run) -> None:
    """h3 loses power; the monitor (the leader) is SIGKILLed once h3 is being failed
    over and started again 1 s later (it waits for the old lease to lapse)."""
    lease = run.store.failover.lease()
    lab.kill_host(run.cfg.path, "h3")
    states = ("fencing", "fenced", "recovering")
    wait_until(lambda: run.store.get_host("h3").state in (*states, "recovered"), 60.0,
               "h3 to be failed over", interval_s=0.02)
    state = run.store.get_host("h3").state
    kill_service(run.cfg, "monitor")
    run.notes.append(f"leader {lease.holder if lease else '?'} killed at h3 {state}")
    time.sleep(1.0)
    restart_control(run.cfg)


def two_drains(run: Run) -> None:
    """h1 drained; once one of its moves goes to h2, h2 is drained too."""
    first = fleet("host", "drain", "h1", "--concurrency", "2")
    if not wait_until(lambda: moving(run.store, first, to="h2") is not None, 120.0, "",
                      fail=False, interval_s=0.05):
        run.notes.append("no move of h1's drain went to h2")
    fleet("host", "drain", "h2", "--concurrency", "2")


@dataclass(frozen=True)
class Scenario:
    name: str
    load: Callable[[Run], None]
    fault: Callable[[Run], None]
    two_copies_max_s: float = 0.0


SCENARIOS = [
    Scenario("agent-kill", one_migration, agent_kill),
    Scenario("dest-libvirtd-early", one_migration, partial(dest_libvirtd, Moment.EARLY)),
    Scenario("dest-libvirtd-mid", one_migration, partial(dest_libvirtd, Moment.MID)),
    Scenario("dest-libvirtd-resumed", one_migration, partial(dest_libvirtd, Moment.RESUMED),
             LIBVIRT_MADE_MAX_S),
    Scenario("dest-libvirtd-source-gone", one_migration,
             partial(dest_libvirtd, Moment.SOURCE_GONE)),
    Scenario("source-power-loss", partial(one_migration, ha=True), source_power_loss),
    Scenario("redis-kill", drain_load, redis_kill),
    Scenario("controller-kill", drain_load, controller_kill),
    Scenario("monitor-kill", failover_load, monitor_kill),
    Scenario("two-drains", two_drains_load, two_drains),
]


# -- settling, restoring, judging --------------------------------------------------------
def settle(run: Run, before: set[str]) -> None:
    """Wait (bounded) until every job of the run ended, no move is active and no host is
    part-way through failover (a host powered on before its fence would be fenced)."""
    def ended() -> bool:
        jobs = [j for j in run.store.list_jobs(1000) if j.id not in before]
        return all(j.terminal for j in jobs) and not run.store.active_moves() \
            and not [h for h in run.store.list_hosts() if h.state in FAILING_OVER]

    started = time.monotonic()
    if not wait_until(ended, SETTLE_S, "", fail=False, interval_s=0.5):
        run.notes.append(f"jobs still running after {SETTLE_S:.0f} s")
    run.notes.append(f"settled in {time.monotonic() - started:.0f} s")
    for job in run.store.list_jobs(1000):
        if job.id not in before:
            failed = [m for m in run.store.job_moves(job) if m.state == "failed"]
            why = f" ({failed[0].vm}: {failed[0].error[:90]})" if failed else ""
            run.notes.append(f"{job.kind} {job.state}{why}")


def back_in_service(store: Store, host: str) -> bool:
    """Whether ``host`` is active, or can be activated (drained, or failed over)."""
    return store.get_host(host).state in ("active", "maintenance", "recovered")


def happenings(store: Store, since: float) -> list[str]:
    """The run's safety steps on copies and its alerts, from the audit stream."""
    seen = []
    for _, event in store.journal.audit(5000):
        if event["at"] < since:
            continue
        if event["kind"].startswith("vm.copy_"):
            seen.append(f"{event['kind'][3:]} {event.get('vm')} on {event.get('host')}")
        elif event["kind"] == "alert":
            seen.append(f"alert {event.get('alert')} {event.get('subject', '')}".strip())
    return list(dict.fromkeys(seen))


def bring_back(run: Run) -> None:
    """Restore the lab (``lab up``) and, once every agent heartbeats, activate every host
    that is not active (activated before its agent beats, a host is failed over again)."""
    restore(run.cfg)
    wait_until(lambda: all(run.store.heartbeat(h) for h in run.cfg.host_names()), 90.0, "",
               fail=False)
    for host in run.cfg.host_names():
        wait_until(partial(back_in_service, run.store, host), 90.0, "", fail=False)
        state = run.store.get_host(host).state
        if state != "active":
            try:
                fleet("host", "activate", host)
            except RuntimeError as exc:
                run.notes.append(f"{host} {state}, not activated: {exc}")
    if not wait_until(lambda: all(run.store.heartbeat(h) for h in run.cfg.host_names())
                      and all(h.state == "active" for h in run.store.list_hosts()), 90.0,
                      "", fail=False):
        run.notes.append("not every host active with a heartbeat after restoring")


def judge(run: Run) -> tuple[list[str], list[str]]:
    """The run's lost VMs and wrong records, as libvirt and the store say now."""
    lost, wrong = [], []
    where, silent = running_copies(run.cfg, run.guests)
    run.notes += [f"{host}'s libvirt does not answer at the end" for host in silent]
    for name, hosts in where.items():
        vm = run.store.find_vm(name)
        if not hosts and (vm is None or vm.state == "running"):
            lost.append(name)
        elif len(hosts) > 1 or (hosts and (vm is None or (vm.host, vm.state)
                                            != (hosts[0], "running"))):
            recorded = f"{vm.host}/{vm.state}" if vm else "no record"
            wrong.append(f"{name} runs on {','.join(hosts)}, recorded {recorded}")
        elif not hosts:
            run.notes.append(f"{name} reported {vm.state if vm else '?'}")
    return lost, wrong


@dataclass
class Result:
    scenario: str
    lost: list[str]
    two_copies_s: float
    wrong: list[str]
    notes: list[str]
    complete: bool = True


def run_once(cfg: LabConfig, scenario: Scenario) -> Result:
    """One run of ``scenario``; a run that broke down is a result with a note."""
    try:
        return _run(cfg, scenario)
    except Exception as exc:  # the next run restores the lab first
        return Result(scenario.name, [], 0.0, [], [f"run broke down: {exc}"], complete=False)


def _run(cfg: LabConfig, scenario: Scenario) -> Result:
    run = Run(cfg, lab_store(cfg))
    bring_back(run)
    remove_all_guests(cfg)
    scenario.load(run)
    time.sleep(BOOT_S)
    before, since = {j.id for j in run.store.list_jobs(1000)}, run.store.now()
    with CopyWatch(cfg, list(run.guests), interval_s=0.1) as watch:
        run.watch, fault_at = watch, time.monotonic()
        try:
            scenario.fault(run)
        except Exception as exc:  # a fault that could not be placed is a note, not a crash
            run.notes.append(f"fault not injected as planned: {exc}")
        settle(run, before)
        bring_back(run)
        wait_until(lambda: judge(Run(cfg, run.store, run.guests)) == ([], []), CONVERGE_S,
                   "", fail=False, interval_s=1.0)
        lost, wrong = judge(run)
    run.notes += happenings(run.store, since)
    run.notes += [f"{name} ran on {'+'.join(sorted(hosts))} {start - fault_at:+.1f} s after"
                  f" the fault for {end - start:.2f} s"
                  for name in run.guests for start, end, hosts in watch.overlaps(name)]
    two = max((watch.two_copies_s(n) for n in run.guests), default=0.0)
    return Result(scenario.name, lost, round(two, 2), wrong, run.notes)


def table(results: list[Result]) -> list[str]:
    rows = ["| scenario | runs | VMs lost | max s with two copies | wrong records | floor |"
            " notes |", "| --- | --- | --- | --- | --- | --- | --- |"]
    limits = {s.name: s.two_copies_max_s for s in SCENARIOS}
    for name in dict.fromkeys(r.scenario for r in results):
        mine = [r for r in results if r.scenario == name]
        lost = sum(len(r.lost) for r in mine)
        wrong = sum(len(r.wrong) for r in mine)
        two = max(r.two_copies_s for r in mine)
        met = lost == 0 and wrong == 0 and two <= limits[name] and all(r.complete for r in mine)
        notes = "; ".join(dict.fromkeys(n for r in mine for n in [*r.notes, *r.lost, *r.wrong]
                                        if not n.startswith("settled in")))
        rows.append(f"| {name} | {len(mine)} | {lost} | {two:.2f} | {wrong} |"
                    f" {'met' if met else '**not met**'} | {notes} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--scenario", action="append", choices=[s.name for s in SCENARIOS])
    parser.add_argument("--json", action="store_true", help="every run as JSON")
    parser.add_argument("--keep", action="store_true", help="leave the lab up")
    args = parser.parse_args()
    chosen = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    cfg = LabConfig(**CHAOS_LAB)  # type: ignore[arg-type]
    os.environ.update(cfg.client_env())
    results = []
    try:
        lab.up(cfg, agents=True, install=True)
        for scenario in chosen:
            for _ in range(args.runs):
                results.append(run_once(cfg, scenario))
                print(json.dumps(asdict(results[-1])), file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            lab.down(cfg.path, expected=cfg)
    print(json.dumps([asdict(r) for r in results], indent=2) if args.json
          else "\n".join(table(results)))


if __name__ == "__main__":
    main()
