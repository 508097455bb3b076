"""The monitor: watches heartbeats and drives failover, one leader at a time.

Every monitor tracks heartbeats on its own clock; only the holder of the Redis lease
decides, and everything it writes is conditional on the lease still naming its term
(holder and epoch, ``fleet.core.lease``): a leader that stalled and lost the lease gets
``LostLease`` at its next write, ends the round there and sends nothing more.

Each round: read the queued events, call the pure ``decide``, save the new state (and
consume those events) *before* acting, then act — send fence and restart tasks, mark
VMs down, record host health and alerts, and keep one failover job per fenced host with
per-VM outcomes. A VM that a live host already reports running is adopted there instead
of restarted, and moves that died with their source host are settled
(``workers.adoption``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleet.core.failover import decide
from fleet.core.failover_model import (
    Action,
    Alert,
    Decision,
    Event,
    FailoverState,
    Fence,
    FenceResult,
    MarkDown,
    Observation,
    OperatorActivate,
    OperatorConfirm,
    OperatorFence,
    Recover,
    RecoverResult,
    Transition,
)
from fleet.core.health import CONFIRMED_OFF, PRE_FENCE, FailoverConfig, Health
from fleet.core.lease import LostLease, Term, new_term
from fleet.core.models import VM, Host, HostState, Job, JobKind, JobState, VMState
from fleet.core.vmguard import GuardConfig, GuardView, RecordState, StartInPlace, Watch, guard
from fleet.settings import Settings
from fleet.store import Store
from fleet.store.connection import server_id
from workers.adoption import adopt, running_elsewhere, settle_orphans
from workers.signing import Keyring, SignatureRefused, open_event, seal_event
from workers.witness import Witness

log = logging.getLogger(__name__)
Send = Callable[[str, dict[str, Any]], None]


PROBED = frozenset(h.value for h in PRE_FENCE | {Health.FENCING})
"""Host states in which the host may still run: a late heartbeat may be a dead agent."""


def event_of(data: dict[str, Any]) -> Event | None:
    """The core event for a queued dict (see ``FailoverStore.push``)."""
    kind = data.get("type")
    if kind == "fence":
        return FenceResult(data["host"], bool(data["ok"]), data.get("detail", ""),
                           bool(data.get("needs_operator", False)))
    if kind == "recover":
        return RecoverResult(data["vm"], data["target"], bool(data["ok"]),
                             data.get("detail", ""))
    if kind == "confirm":
        return OperatorConfirm(data["host"])
    if kind == "fence_now":
        return OperatorFence(data["host"])
    if kind == "activate":
        return OperatorActivate(data["host"])
    return None


def failover_config(settings: Settings) -> FailoverConfig:
    return FailoverConfig.from_mapping(settings.model_dump())


@dataclass
class Monitor:
    """One monitor process's loop body (``tick``)."""

    store: Store
    settings: Settings
    me: str
    send: Send
    clock: Callable[[], float] = time.time
    last_beat: dict[str, float] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    first_seen: dict[str, float] = field(default_factory=dict)
    reports: dict[str, dict[str, str]] = field(default_factory=dict)
    epoch: int = 0
    term: Term | None = None
    last_round: float | None = None
    """When this monitor last began a round that read Redis (None: not yet)."""
    server: str = ""
    """The run id of the Redis server last read: another one means a failover."""
    keyring: Keyring | None = None
    """Checks the signatures of inbox events and signs this monitor's own (None: no
    checks, for tests of the decisions alone)."""

    def __post_init__(self) -> None:
        self.config = failover_config(self.settings)
        self.guard_config = GuardConfig.from_mapping(self.settings.model_dump(),
                                                     self.config.suspect_after_s)
        self.witness = Witness(self.settings.failover_witness_timeout_s, self.clock)

    def observe_beats(self, now: float, hosts: list[Host]) -> None:
        for host in hosts:
            beat = self.store.heartbeat(host.name)
            if beat is not None and float(beat["at"]) != self.seen.get(host.name):
                self.seen[host.name] = float(beat["at"])
                self.last_beat[host.name] = now
                self.reports[host.name] = {str(d["name"]): str(d["state"])
                                           for d in beat.get("domains", [])}
        if self.settings.failover_witness:  # every monitor probes: a new leader knows too
            late = now - self.config.suspect_after_s
            self.witness.check(h for h in hosts if h.state in PROBED
                               and self._last_sign(h.name, now) <= late)

    def _after_a_gap(self, now: float) -> None:
        """After a time this monitor could not read Redis, or when another Redis server
        answers (a Sentinel promotion: heartbeats written to the old master may be lost,
        agents reconnect later), nobody's silence is held against them: every host's
        clock starts again now, so a host is judged only after a full ``down_after_s``
        of silence that this monitor watched. A Redis failover thus fences nobody."""
        server = server_id(self.store.r)
        since = None if self.last_round is None else now - self.last_round
        cut_off = since is not None and since > self._gap_s
        moved = bool(self.server) and server != self.server
        if cut_off or moved:
            why = "another Redis server answers" if moved else \
                f"no round for {since:.1f}s"
            log.warning("monitor %s: %s; every host's silence counts from now", self.me, why)
            self.store.emit("", "monitor.redis_gap", monitor=self.me, detail=why)
            self.last_beat = {h: now for h in self.last_beat}
            self.first_seen = {h: now for h in self.first_seen}
        self.server, self.last_round = server, now

    @property
    def _gap_s(self) -> float:
        """A pause between rounds longer than this means Redis could not be read."""
        return max(3 * self.settings.monitor_interval_s, 2.0)

    def _last_sign(self, host: str, now: float) -> float:
        """The host's newest heartbeat, or when this monitor first saw it without one."""
        return self.last_beat.get(host) or self.first_seen.setdefault(host, now)

    def tick(self) -> Decision | None:
        """One round: the decision acted on, or None when standing by or when the lease
        was lost during the round (nothing more is written or sent then)."""
        now = self.clock()
        hosts = self.store.list_hosts()
        self._after_a_gap(now)
        self.observe_beats(now, hosts)
        term = self.store.failover.claim(self.me, self.config.lease_ttl_s)
        if term is None:
            self.term = None
            return None
        try:
            return self._lead(term, now, hosts)
        except LostLease as exc:
            log.warning("monitor %s ends its round: %s", self.me, exc)
            return None

    @property
    def _term(self) -> Term:
        if self.term is None:
            raise LostLease(f"{self.me} holds no lease")
        return self.term

    def _lead(self, term: Term, now: float, hosts: list[Host]) -> Decision:
        """The leader's round under ``term``; every write raises ``LostLease`` once the
        lease no longer names it."""
        takeover, self.epoch, self.term = new_term(self.epoch, term), term.epoch, term
        raw = self.store.failover.peek()
        events = tuple(e for e in (event_of(d) for d in map(self._opened, raw))
                       if e is not None)
        claims = {h.name: self.store.claimed(h.name) for h in hosts}
        obs = Observation(hosts, dict(self.last_beat), self.store.list_vms(), events, claims,
                          takeover, self.witness.answered())
        decision = decide(obs, FailoverState.from_dict(self.store.failover.load_state()),
                          self.config, now)
        self.store.failover.save_state(decision.state.to_dict(), term, consumed=len(raw))
        for transition in decision.transitions:
            self._record(transition)
        self._settle_orphans(decision.state)  # frees their VMs' locks before restarts
        for action in decision.actions:
            self._act(action)
        self._note_unplaced(decision)
        self._guard_vms(now, hosts, obs.vms)
        return decision

    def _guard_vms(self, now: float, hosts: list[Host], vms: list[VM]) -> None:
        """The VM guard's round: HA VMs stopped on live hosts are started again."""
        view = GuardView(vms, {h.name: h.state for h in hosts},
                         {h: now - t for h, t in self.last_beat.items()}, self.reports,
                         frozenset(m.vm for m in self.store.active_moves()))
        watches = {k: Watch.from_dict(v) for k, v in self.store.failover.load_guard().items()}
        decision = guard(view, watches, self.guard_config, now)
        if decision.watches != watches:
            self.store.failover.save_guard({k: w.to_dict() for k, w in decision.watches.items()},
                                           self._term)
        for action in decision.actions:
            if isinstance(action, StartInPlace):
                self._send("fleet.vm.start_in_place", {"vm": action.vm, "source": action.host,
                                                       "attempt": action.attempt})
                self.store.emit("", "vm.guard_start", vm=action.vm, host=action.host,
                                attempt=action.attempt)
            elif isinstance(action, RecordState):
                self._record_vm_state(action)
            else:
                self._act(action)

    def _record_vm_state(self, action: RecordState) -> None:
        if self._set_vm_state(action.vm, action.host, action.state):
            self.store.emit("", "vm.state", vm=action.vm, host=action.host,
                            state=action.state, reason=action.reason)

    def _record(self, t: Transition) -> None:
        host = self.store.get_host(t.host)
        if not (t.new is Health.ACTIVE and host.state == HostState.MAINTENANCE.value):
            old = self.store.failover.set_host_state(t.host, t.new.value, self._term)
            if old is not None:
                self.store.emit("", "host.state", host=t.host, old=old, new=t.new.value)
        self.store.emit(self.store.failover.job(t.host) or "", "host.health", host=t.host,
                        old=t.old.value, new=t.new.value, detail=t.detail)
        if t.new is Health.FENCED:
            self._open_job(t.host)
        elif t.new is Health.RECOVERED:
            self._close_job(t.host)

    def _send(self, task: str, kwargs: dict[str, Any]) -> None:
        """Send a task if the lease still names this round's term (its decision was
        saved under it); the task may still arrive after a takeover, hence ``epoch``."""
        self.store.failover.hold(self._term)
        self.send(task, kwargs)

    def _act(self, action: Action) -> None:
        if isinstance(action, Fence):
            self._send("fleet.host.fence", {"host": action.host, "attempt": action.attempt,
                                            "timeout_s": action.timeout_s,
                                            "epoch": self._term.epoch})
        elif isinstance(action, Recover):
            if self._adopted(action):
                return
            job = self.store.failover.job(action.source) or ""
            self._outcome(action.source, action.vm, f"restarting on {action.target}")
            self._send("fleet.vm.restart", {"vm": action.vm, "source": action.source,
                                            "target": action.target, "job_id": job})
        elif isinstance(action, MarkDown):
            self._mark_down(action)
        elif isinstance(action, Alert):
            log.warning("failover alert %s %s: %s", action.kind, action.subject,
                        action.message)
            self.store.emit("", "alert", alert=action.kind, subject=action.subject,
                            message=action.message)
            self.store.journal.count("alerts", kind=action.kind)

    def _fresh_reports(self) -> dict[str, dict[str, str]]:
        """Domain reports of hosts whose heartbeat is not yet suspect-old."""
        now = self.clock()
        return {h: r for h, r in self.reports.items()
                if now - self.last_beat.get(h, 0.0) < self.config.suspect_after_s}

    def _adopted(self, action: Recover) -> bool:
        """Instead of a restart: the VM already runs on a live host (its migration had
        switched over when the source died), so the record follows it there."""
        vm = self.store.find_vm(action.vm)
        recorded = vm.host if vm is not None else action.source
        if recorded != action.source:  # settled this round (an orphaned move) or since
            host: str | None = recorded
            detail = f"recorded on {recorded} since; not restarted"
        else:
            host = running_elsewhere(self._fresh_reports(), action.vm, action.source)
            if host is None or not adopt(self.store, action.vm, action.source, host,
                                         self._term):
                return False
            detail = f"running on {host} (found there, not restarted)"
        self.store.emit(self.store.failover.job(action.source) or "", "vm.adopted",
                        vm=action.vm, source=action.source, host=host)
        self._outcome(action.source, action.vm, detail)
        self._push({"type": "recover", "vm": action.vm, "target": host, "ok": True,
                    "detail": detail})
        return True

    def _push(self, event: dict[str, Any]) -> None:
        self.store.failover.push(event if self.keyring is None
                                 else seal_event(self.keyring, event))

    def _opened(self, data: dict[str, Any]) -> dict[str, Any]:
        """An inbox event whose signature holds; an empty one (ignored) otherwise, with
        an alert: a forged fence result must never let a live host's VMs restart."""
        if self.keyring is None:
            return data
        try:
            return open_event(self.keyring, data)
        except SignatureRefused as exc:
            log.warning("monitor %s ignores an inbox event: %s", self.me, exc)
            self.store.emit("", "alert", alert="unsigned_event", subject=str(data.get("host")
                            or data.get("vm") or "?"), message=f"failover inbox: {exc}")
            return {}

    def _settle_orphans(self, state: FailoverState) -> None:
        """End the moves that died with their confirmed-off source host."""
        dead = [h for h, health in state.hosts.items() if health.state in CONFIRMED_OFF]
        if not dead:
            return
        for outcome in settle_orphans(self.store, dead, self._fresh_reports(), f"monitor:{self.me}",
                                      self.settings.move_lease_s):
            move = self.store.get_move(outcome.move_id)
            log.warning("settled orphaned move %s of %s: %s", move.id, move.vm, outcome.detail)
            if self.store.want_advance(move.job_id):
                self._send("fleet.job.advance", {"job_id": move.job_id})

    def _mark_down(self, action: MarkDown) -> None:
        if self._set_vm_state(action.vm, action.host, VMState.DOWN.value):
            self._outcome(action.host, action.vm, f"down: {action.reason}")

    def _set_vm_state(self, name: str, host: str, state: str) -> bool:
        """Record ``name`` as ``state`` if it is still recorded on ``host`` (CAS)."""
        def mutate(vm: VM) -> VM | None:
            if vm.host != host:
                return None
            vm.state = state
            return vm

        return self.store.failover.cas_vm(name, mutate, self._term) is not None

    def _open_job(self, host: str) -> None:
        now = self.clock()
        job = Job(id="", kind=JobKind.FAILOVER.value, state=JobState.RUNNING.value,
                  requested_by=f"monitor:{self.me}", target=host, summary={"vms": {}},
                  created_at=now, started_at=now)
        job = self.store.failover.open_job(host, job, self._term)
        self.store.emit(job.id, "job.created", job_kind=job.kind, by=job.requested_by,
                        target=host, vms=[])

    def _close_job(self, host: str) -> None:
        job_id = self.store.failover.job(host)
        if job_id is None:
            return
        now = self.clock()

        def finish(job: Job) -> Job | None:
            if job.terminal:
                return None
            outcomes = job.summary.get("vms", {})
            bad = [v for v, o in outcomes.items() if not str(o).startswith(("running", "down"))]
            job.state = (JobState.FAILED if bad else JobState.SUCCEEDED).value
            job.finished_at = now
            job.summary["duration_s"] = round(now - job.started_at, 2)
            return job

        done = self.store.failover.update_job(job_id, finish, self._term)
        if done is not None:
            self.store.emit(job_id, f"job.{done.state}", **done.summary)

    def _outcome(self, host: str, vm: str, outcome: str) -> None:
        record_outcome(self.store, self.store.failover.job(host), vm, outcome, self._term)

    def _note_unplaced(self, decision: Decision) -> None:
        for vm in decision.unplaced:
            found = self.store.find_vm(vm)
            if found is not None:
                self._outcome(found.host, vm, "waiting for capacity")


def record_outcome(store: Store, job_id: str | None, vm: str, outcome: str,
                   term: Term | None = None) -> None:
    """Write one VM's outcome into a failover job's summary (under the monitor's
    ``term`` when the monitor writes it)."""
    if not job_id:
        return

    def note(job: Job) -> Job | None:
        vms = dict(job.summary.get("vms", {}))
        if vms.get(vm) == outcome:
            return None
        vms[vm] = outcome
        job.summary = {**job.summary, "vms": vms}
        return job

    done = (store.update_job(job_id, note) if term is None
            else store.failover.update_job(job_id, note, term))
    if done is not None:
        store.emit(job_id, "vm.outcome", vm=vm, outcome=outcome)
