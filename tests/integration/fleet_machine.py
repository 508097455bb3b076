"""A Hypothesis rule-based state machine over fleet's real executors (see
``interleavings``): operators, controller, runners, reconcilers, failover, the VM guard
and the sweepers take steps in any order, with crashes, lost and duplicate messages,
stale reads and libvirt's late faults. After every step: at most one running copy per
VM, no host over capacity, no VM lock without a live owner; after a controller's write
on a stale read, a move that went on since the read (claimed or ended) is unchanged.
At the end, once every message was delivered and every sweeper ran: every job is
terminal, no lock is held and every record names where its VM runs (or says it runs
nowhere).

Redis round trips are what an example costs: invariants read in one (a script),
heartbeats go out together and only when they changed, the VM guard is asked only
about stopped domains (``start_in_place`` does nothing about the others), and one
client serves every example of a process (``bench.interleavings`` measures it).
"""

from __future__ import annotations

import threading
from contextlib import suppress
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fleet.core.errors import FleetError
from fleet.core.hypervisor import STOPPED_DOMAIN
from fleet.core.models import Host, HostState, JobKind, Move, MoveState, VMState
from fleet.core.planmodel import PlacementConfig
from fleet.store import Store
from fleet.store.jobs import RESTART_LOCK
from tests.integration.interleavings import (
    HOST_MEMORY,
    HOSTS,
    SETTINGS,
    VMS,
    Crash,
    StepHypervisor,
    live_hosts,
    lock_owners,
    new_fleet,
    purge,
    settled_ok,
    vm_states,
)
from workers.adoption import adopt, running_elsewhere, settle_orphans
from workers.drain import DrainPlanner, create_drain, running_drain, start_maintenance
from workers.heartbeat import beat_once
from workers.inventory import sweep_strays
from workers.jobs import JobService
from workers.reconciler import Reconciler
from workers.recovery import restart
from workers.runner import MigrationRunner
from workers.vmpower import start_in_place

Message = tuple[str, str, str]  # kind, id, host that consumes it ("" for the controller)
CRASHES = st.sampled_from(["", "", "migrate_start", "migrate_end", "hold", "hold"])
FAULTS = st.sampled_from(["", "", "before", "after", "both"])


class FleetMachine(RuleBasedStateMachine):
    """One small fleet per example; ``url`` is a real Redis."""

    url: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        self.store, self.world, self.now = new_fleet(self.url)
        self.msgs: list[Message] = []
        self.stale: list[Move] = []
        self.held: threading.Thread | None = None
        self.held_move: Message = ("", "", "")
        self.held_fault = ""
        self.held_error: list[Exception] = []
        self.beats_sent: list[tuple[Any, ...]] = []
        self.svc = JobService(self.store, self._dispatch, clock=self._clock,
                              planner=DrainPlanner(self.store, PlacementConfig()))
        self._beat()

    # -- plumbing -------------------------------------------------------------------
    def _clock(self) -> float:
        return self.now[0]

    def _dispatch(self, move: Move) -> None:
        self.msgs.append(("migrate", move.id, move.source))

    def hv(self, host: str) -> StepHypervisor:
        return StepHypervisor(self.world, host)

    def _locate(self, host: Host) -> StepHypervisor:
        return self.hv(host.name)

    def _beat(self) -> None:
        """Every agent's heartbeat (none from a host without power), sent together; a
        batch equal to the last one sent is not sent again (only ``_beat`` writes them)."""
        with self.store.r.pipeline(transaction=False) as pipe:
            beats = Store(pipe, self.store.keys, clock=self._clock)
            for host in HOSTS:
                if host in self.world.off:
                    pipe.delete(self.store.keys.heartbeat(host))
                else:
                    beat_once(beats, self.hv(host), f"{host}/agent", ttl_s=3600)
            sent = [args for args, _ in pipe.command_stack]
            if sent != self.beats_sent:
                pipe.execute()
                self.beats_sent = sent

    def _advance(self, job_id: str) -> None:
        self.msgs.append(("advance", job_id, ""))

    # -- operators --------------------------------------------------------------------
    @rule(vm=st.sampled_from(VMS), to=st.sampled_from(["", *HOSTS]))
    def migrate(self, vm: str, to: str) -> None:
        record = self.store.get_vm(vm)
        dest = self.store.find_host(to) if to else None
        if to == record.host or (dest is not None and dest.state != HostState.ACTIVE.value):
            return
        try:
            job = self.store.create_move_job(JobKind.MIGRATE, "op", [
                Move("", "", vm, record.host, target=to)])
        except FleetError:
            return  # already moving
        self.msgs.append(("start", job.id, ""))

    @rule(host=st.sampled_from(HOSTS))
    def drain(self, host: str) -> None:
        state = self.store.get_host(host).state
        if host in self.world.off or running_drain(self.store, host) is not None \
                or state != HostState.ACTIVE.value:
            return
        start_maintenance(self.store, [host])
        self.msgs.append(("start", create_drain(self.store, [host], 2, "op").id, ""))

    @rule(host=st.sampled_from(HOSTS))
    def activate(self, host: str) -> None:
        if host not in self.world.off:
            self.store.set_host_state(host, HostState.ACTIVE.value)

    @rule(i=st.integers(0, 50))
    def cancel(self, i: int) -> None:
        jobs = [j for j in self.store.list_jobs() if not j.terminal]
        if jobs:
            self.msgs.append(("cancel", jobs[i % len(jobs)].id, ""))

    # -- Celery ----------------------------------------------------------------------
    @precondition(lambda self: bool(self.msgs))
    @rule(i=st.integers(0, 50), crash=CRASHES, fault=FAULTS)
    def deliver(self, i: int, crash: str, fault: str) -> None:
        ready = [k for k, m in enumerate(self.msgs) if m[2] not in self.world.off]
        if not ready:
            return
        msg = self.msgs.pop(ready[i % len(ready)])
        if crash == "hold" and msg[0] == "migrate" and self.held is None:
            self._hold(msg, fault)
            return
        self.world.crash, self.world.fault = ("" if crash == "hold" else crash), fault
        self._consume(msg)
        self.world.crash = self.world.fault = ""
        self._beat()

    def _hold(self, msg: Message, fault: str) -> None:
        """Run this migration in a thread that waits inside libvirt's call until
        ``release`` (a slow migration while other steps go on)."""
        self.world.gate.clear()
        self.world.arrived.clear()
        self.world.crash, self.world.kill_held = "hold", False
        self.held_move, self.held_fault = msg, fault
        self.held = threading.Thread(target=self._consume_held, args=(msg,), daemon=True)
        self.held.start()
        while not self.world.arrived.is_set() and self.held.is_alive():
            self.world.arrived.wait(0.01)
        self.world.crash = ""  # consumed, or the runner ended before migrating

    def _consume_held(self, msg: Message) -> None:
        try:
            self._consume(msg)
        except Exception as exc:  # re-raised by ``release`` in the test's own thread
            self.held_error.append(exc)

    @precondition(lambda self: self.held is not None)
    @rule()
    def release(self) -> None:
        """The slow migration ends; its runner goes on from there."""
        held, self.held = self.held, None
        assert held is not None
        self.world.fault = self.held_fault
        self.world.gate.set()
        held.join(30)
        assert not held.is_alive(), "a runner did not finish"
        if self.held_error:
            raise self.held_error.pop()
        self.world.fault = ""
        self._beat()

    def _consume(self, msg: Message) -> None:
        kind, key, host = msg
        if kind == "start":
            self.svc.start(key)
        elif kind == "advance":
            self.svc.advance(key)
        elif kind == "cancel":
            self.svc.cancel(key, "op")
        else:
            self._run(key, host)

    def _run(self, move_id: str, host: str) -> None:
        runner = MigrationRunner(self.store, self.hv(host), SETTINGS, self._locate,
                                 f"{host}/runner", sleep=lambda s: None)
        try:
            runner.run(move_id)
        except Crash:
            return  # the agent died mid-move: no message announces the end
        move = self.store.get_move(move_id)
        self._advance(move.job_id)

    @precondition(lambda self: bool(self.msgs))
    @rule(i=st.integers(0, 50))
    def duplicate(self, i: int) -> None:
        self.msgs.append(self.msgs[i % len(self.msgs)])

    @precondition(lambda self: bool(self.msgs))
    @rule(i=st.integers(0, 50))
    def lose(self, i: int) -> None:
        self.msgs.pop(i % len(self.msgs))

    # -- the controller, on stale reads ----------------------------------------------
    @rule()
    def read_moves(self) -> None:
        self.stale = [m for j in self.store.list_jobs() if not j.terminal
                      for m in self.store.job_moves(j) if m.state == MoveState.PENDING.value]

    @precondition(lambda self: bool(self.stale))
    @rule(i=st.integers(0, 50), cancel=st.booleans())
    def write_on_stale_read(self, i: int, cancel: bool) -> None:
        """The controller acts on a move as it read it earlier. If the move went on since
        (a runner claimed it, or it ended), the write must leave it as it is."""
        move = self.stale[i % len(self.stale)]
        current = self.store.find_move(move.id)  # what the write finds
        if cancel:
            self.svc._drop(move, MoveState.CANCELLED.value, "cancelled on a stale read")
        elif move.destination:
            self.svc.redeliver(move.job_id, older_than_s=-1)
        else:
            self.svc._launch(move)
        self._left_alone(current)

    @precondition(lambda self: self.held is None and bool(self.msgs))
    @rule(i=st.integers(0, 50), redeliver=st.booleans(), fault=FAULTS)
    def claim_between_read_and_write(self, i: int, redeliver: bool, fault: str) -> None:
        """The controller reads a dispatched move; before it writes (a cancel, or the
        sweeper's re-dispatch), the move's runner claims it and starts migrating (held)."""
        ready = [k for k, m in enumerate(self.msgs)
                 if m[0] == "migrate" and m[2] not in self.world.off]
        if not ready:
            return
        msg = self.msgs.pop(ready[i % len(ready)])
        read = self.store.find_move(msg[1])
        self._hold(msg, fault)
        if read is None or read.state != MoveState.PENDING.value:
            return
        current = self.store.find_move(read.id)
        if redeliver:  # what ``JobService.redeliver`` does with each move it read
            self.svc.redispatch(read)
        else:
            self.svc._drop(read, MoveState.CANCELLED.value, "cancelled on a stale read")
        self._left_alone(current)

    def _left_alone(self, current: Move | None) -> None:
        """A move that went on (claimed or ended) is what it was before the write."""
        if current is not None and (current.state != MoveState.PENDING.value
                                    or current.token):
            after = self.store.find_move(current.id)
            assert after == current, ("a write on a stale read changed a move that went on",
                                      current, after)

    # -- time, sweepers and reconcilers -------------------------------------------------
    @rule(dt=st.sampled_from([1.0, 40.0, 130.0]))
    def time_passes(self, dt: float) -> None:
        self.now[0] += dt
        self._beat()

    @rule()
    def sweep(self) -> None:
        self.svc.sweep(SETTINGS.redeliver_after_s, SETTINGS.pending_job_after_s)

    @rule(host=st.sampled_from(HOSTS))
    def reconcile(self, host: str) -> None:
        """The host's reconciler; one that is following a slow migration of this host
        waits for it (held migrations report no job, so it is left out meanwhile)."""
        if host in self.world.off or (self.held and self.held_move[2] == host):
            return
        rec = Reconciler(self.store, {host: self.hv(host)}, self._locate, SETTINGS,
                         f"{host}/reconciler", sleep=lambda s: None, clock=self._clock)
        for outcome in rec.sweep():
            self._advance(self.store.get_move(outcome.move_id).job_id)

    @rule()
    def agents_look_after_their_hosts(self) -> None:
        """Each live host's stray sweep, then its VM guard's start of every stopped domain
        (``start_in_place`` changes nothing unless the domain here is stopped: it checks
        that the record names this host and says ``running``, and that no job holds it)."""
        for host in live_hosts(self.store, self.world):
            sweep_strays(self.store, self.hv(host), self._locate)
            for vm, dom in sorted(self.world.domains[host].items()):
                if dom.state in STOPPED_DOMAIN:
                    start_in_place(self.store, self.hv(host), vm, 1)  # the VM guard
        self._beat()

    # -- power and failover -------------------------------------------------------------
    @precondition(lambda self: not self.world.off)
    @rule(host=st.sampled_from(HOSTS))
    def power_loss(self, host: str) -> None:
        """The host dies and is fenced (power-off confirmed) at once."""
        if self.held is not None and self.held_move[2] == host:
            self.world.kill_held = True  # its runner dies with the host
            self.release()
        self.world.power_off(host)
        self.store.set_host_state(host, "fenced")
        self._beat()

    @precondition(lambda self: bool(self.world.off))
    @rule()
    def power_back(self) -> None:
        host = sorted(self.world.off)[0]
        self.world.off.discard(host)
        self.store.set_host_state(host, HostState.ACTIVE.value)
        self._beat()

    @precondition(lambda self: bool(self.world.off))
    @rule(crash=st.booleans())
    def failover(self, crash: bool) -> None:
        self._failover("start" if crash else "")

    def _failover(self, crash: str) -> None:
        dead = sorted(self.world.off)
        reports = {h: {d.name: d.state.value for d in self.hv(h).list_domains()}
                   for h in live_hosts(self.store, self.world)}
        for outcome in settle_orphans(self.store, dead, reports, "monitor", 30):
            self._advance(self.store.get_move(outcome.move_id).job_id)
        for vm in self.store.list_vms():
            if vm.host in dead and vm.state in (VMState.RUNNING.value, VMState.DOWN.value):
                self._recover(vm.name, vm.host, reports, crash)
        self._beat()

    def _recover(self, vm: str, source: str, reports: dict[str, dict[str, str]],
                 crash: str) -> None:
        found = running_elsewhere(reports, vm, source)
        if found is not None:
            adopt(self.store, vm, source, found)
            return
        target = self._room_for(vm)
        if target is None:
            self.store.place_vm(vm, source, VMState.DOWN.value, on=source)
            return
        self.world.crash = crash
        with suppress(Crash):  # the restarting agent died between the record and the start
            restart(self.store, self.hv(target), vm, source, hold_s=60)
        self.world.crash = ""

    def _room_for(self, vm: str) -> str | None:
        size = self.store.get_vm(vm).memory_mib
        for host in live_hosts(self.store, self.world):
            if self.store.get_host(host).state != HostState.ACTIVE.value:
                continue
            used = sum(v.memory_mib for v in self.store.list_vms() if v.host == host)
            if used + self.store.claimed(host)[1] + size <= HOST_MEMORY:
                return host
        return None

    # -- what must hold after every step -----------------------------------------------
    @invariant()
    def at_most_one_running_copy(self) -> None:
        for vm in VMS:
            assert len(self.world.running(vm)) <= 1, (vm, self.world.domains)

    @invariant()
    def no_host_over_capacity(self) -> None:
        for host, domains in self.world.domains.items():
            used = sum(d.memory_mib for d in domains.values() if d.state.value == "running")
            assert used <= HOST_MEMORY, (host, domains)

    @invariant()
    def every_lock_has_a_live_owner(self) -> None:
        for vm, (owner, move, job_exists) in lock_owners(self.store).items():
            if owner.startswith(RESTART_LOCK):
                continue
            assert move is not None and job_exists, owner
            if move.terminal:  # only between a move's end and its lock's release
                assert self.store.sweep_locks() and self.store.lock_owner(vm) is None

    def teardown(self) -> None:
        try:
            if self.held is not None:
                self.release()
            self._quiesce()
            self._check_settled()
        finally:
            purge(self.store)

    def _quiesce(self) -> None:
        """Let every message arrive and every sweeper run until nothing changes."""
        for _ in range(12):
            self.now[0] += 200.0
            self._beat()
            if self.world.off:
                self._failover("")
            for host in HOSTS:
                self.reconcile(host)
            self.sweep()
            while any(m[2] not in self.world.off for m in self.msgs):
                self.deliver(0, "", "")
            self.agents_look_after_their_hosts()
            if self._quiet():
                return

    def _quiet(self) -> bool:
        jobs_done = all(j.terminal for j in self.store.list_jobs(limit=1000))
        return jobs_done and not self.store.r.smembers(self.store.keys.vm_locks)

    def _check_settled(self) -> None:
        jobs = {j.id: j.state for j in self.store.list_jobs(limit=1000)}
        assert all(s in ("succeeded", "failed", "cancelled") for s in jobs.values()), jobs
        locks = dict(zip(VMS, self.store.r.mget([self.store.keys.vm_lock(vm) for vm in VMS]),
                         strict=True))
        assert not any(locks.values()), locks
        records = vm_states(self.store)
        for vm in VMS:
            running = self.world.running(vm)
            assert settled_ok(records[vm], running), (vm, records[vm], running)


def machine(url: str, **overrides: Any) -> type[FleetMachine]:
    """The machine class bound to the Redis at ``url``."""
    return type("BoundFleetMachine", (FleetMachine,), {"url": url, **overrides})
