"""Failover decisions: from the observed fleet and the clock to fences and restarts.

``decide(observation, state, cfg, now)`` is the monitor's whole brain as one pure
function. The caller (the leader monitor) gathers an ``Observation`` — host records,
last heartbeat times, VM records, outside capacity claims and the events since the last
call (fence results, restart results, operator commands) — calls ``decide``, persists
``Decision.state`` *before* executing ``Decision.actions``, and feeds the outcomes
back as events on a later call.

Safety rules the actions rely on (and the scenario suite checks):

* ``Recover`` is only emitted for VMs recorded on a host that is confirmed off:
  fenced (power-off confirmed by a status check) or confirmed down by an operator.
* The executor of ``Recover(vm, source, target)`` must first move the VM record from
  ``source`` to ``target`` with a compare-and-set (setting its state ``running``) and
  skip the start when that fails, so a duplicate or stale action never starts a second
  copy; if the start fails it moves the record back (state ``down``) and reports a
  failed ``RecoverResult``.
* If more than ``storm_share`` of the non-maintenance hosts are unreachable at once,
  nobody is fenced (the network or the control plane is the likelier culprit) and a
  ``storm`` alert is raised. The unreachable hosts are *held*: none of them is fenced
  automatically until its heartbeat returns or an operator fences, confirms or
  activates it by hand; hosts that vanish while a storm is on are held too. The storm
  is over (``storm_over``) when no host is held any more.
* Maintenance hosts are never fenced by heartbeat loss and never receive restarts.
* A host whose agent is silent but whose hypervisor answered the monitor's witness
  probe within ``witness_window_s`` is not fenced: its agent died, its VMs still run.
  An operator's ``confirm-down`` of such a host is refused too.

The state can be lost without harm: a fresh ``FailoverState`` re-derives everything
from heartbeats and VM records (a dead host is fenced again, which is idempotent, and
VMs whose records already moved are not restarted again).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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
from fleet.core.health import (
    CONFIRMED_OFF,
    PRE_FENCE,
    FailoverConfig,
    Health,
    HostHealth,
    Step,
    move,
    start_fencing,
    step_host,
)
from fleet.core.lease import Lease, claim_lease, may_act
from fleet.core.models import Host, HostState
from fleet.core.recovery import Pending, plan_recovery, settle_pending

__all__ = [
    "Action",
    "Alert",
    "Decision",
    "Event",
    "FailoverState",
    "Fence",
    "FenceResult",
    "Lease",
    "MarkDown",
    "Observation",
    "OperatorActivate",
    "OperatorConfirm",
    "OperatorFence",
    "Recover",
    "RecoverResult",
    "Transition",
    "claim_lease",
    "decide",
    "may_act",
]

# -- the decision -------------------------------------------------------------------


@dataclass
class _Round:
    """Mutable scratch of one ``decide`` call."""

    hosts: dict[str, HostHealth]
    pending: dict[str, Pending]
    excluded: dict[str, dict[str, float]]
    now: float
    actions: list[Action] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)

    def set(self, host: str, new: HostHealth) -> None:
        old = self.hosts[host]
        if new.state is not old.state:
            self.transitions.append(Transition(host, old.state, new.state, new.detail))
        self.hosts[host] = new

    def alert(self, kind: str, subject: str, message: str) -> None:
        self.actions.append(Alert(kind, subject, message))


def decide(obs: Observation, state: FailoverState, cfg: FailoverConfig, now: float,
           ) -> Decision:
    """One monitor round; see the module doc for the contract."""
    known = {h.name for h in obs.hosts}
    r = _Round(
        hosts={h.name: _remember(state.hosts.get(h.name), obs.last_beat.get(h.name), now)
               for h in obs.hosts},
        pending={v: p for v, p in state.pending.items()},
        excluded={v: {h: u for h, u in e.items() if u > now}
                  for v, e in state.excluded.items()},
        now=now,
    )
    r.excluded = {v: e for v, e in r.excluded.items() if e}
    if obs.takeover:
        _take_over(r, cfg)
    for event in obs.events:
        if getattr(event, "host", None) in known or isinstance(event, RecoverResult):
            _apply_event(r, event, obs, cfg)
    held = _held(obs, r, state.held, cfg)
    if bool(held) != state.storm:
        _storm_alert(r, held, len(obs.hosts))
    for host in sorted(obs.hosts, key=lambda h: h.name):
        _step(r, host, _age(obs, r, host.name), host.name not in held, cfg,
              _witnessed(obs, r, host.name, cfg))
    unplaced = _recover(r, obs, cfg)
    for vm in sorted(set(unplaced) - state.unplaced):
        r.alert("no_capacity", vm, f"{vm}: no host with room for it; retrying")
    new_state = FailoverState(r.hosts, r.pending, r.excluded, frozenset(unplaced), held)
    return Decision(new_state, tuple(r.actions), tuple(r.transitions), tuple(unplaced))


def _take_over(r: _Round, cfg: FailoverConfig) -> None:
    r.pending = {}
    for host, h in sorted(r.hosts.items()):
        if h.state is Health.FENCING:
            r.hosts[host] = replace(h, deadline=r.now + cfg.fence_timeout_s + cfg.fence_grace_s)
            r.actions.append(Fence(host, h.attempts, cfg.fence_timeout_s))


def _age(obs: Observation, r: _Round, host: str) -> float:
    return max(0.0, r.now - r.hosts[host].last_beat)


def _witnessed(obs: Observation, r: _Round, host: str, cfg: FailoverConfig) -> bool:
    """The host's hypervisor answered the witness probe within the window."""
    return r.now - obs.witness.get(host, float("-inf")) < cfg.witness_window_s


def _remember(h: HostHealth | None, beat: float | None, now: float) -> HostHealth:
    """The stored health with the newest heartbeat time folded in."""
    if h is None:
        return HostHealth(since=now, last_beat=now if beat is None else beat)
    if beat is not None and beat > h.last_beat:
        return replace(h, last_beat=beat)
    return h


def _maintenance(host: Host) -> bool:
    return host.state == HostState.MAINTENANCE.value


def _held(obs: Observation, r: _Round, held: frozenset[str], cfg: FailoverConfig,
          ) -> frozenset[str]:
    """Hosts a storm holds back from automatic fencing; see the module doc."""
    watched = [h for h in obs.hosts if not _maintenance(h)]
    lost = frozenset(h.name for h in watched if r.hosts[h.name].state in PRE_FENCE
                     and _age(obs, r, h.name) >= cfg.suspect_after_s)
    fencing = [h for h in watched if r.hosts[h.name].state is Health.FENCING]
    if len(lost) + len(fencing) > cfg.storm_share * len(watched) or held & lost:
        return lost
    return frozenset()


def _storm_alert(r: _Round, held: frozenset[str], total: int) -> None:
    if held:
        r.alert("storm", "fleet", f"{len(held)} of {total} hosts unreachable "
                f"({', '.join(sorted(held))}): fencing nobody; check the network and the "
                "control plane, then fence or confirm-down hosts by hand")
    else:
        r.alert("storm_over", "fleet", "held hosts are back or handled: fencing resumes")


def _step(r: _Round, host: Host, age: float, may_fence: bool, cfg: FailoverConfig,
          witnessed: bool) -> None:
    h = r.hosts[host.name]
    if _maintenance(host) and h.state in PRE_FENCE:
        if h.state is not Health.ACTIVE and h.state is not Health.FENCE_FAILED:
            r.set(host.name, move(h, Health.ACTIVE, r.now, detail="maintenance"))
        return
    step: Step = step_host(h, age, may_fence, cfg, r.now, witnessed)
    for via in step.via:
        r.set(host.name, via)
    r.set(host.name, step.health)
    if step.fence:
        r.actions.append(Fence(host.name, step.health.attempts, cfg.fence_timeout_s))
    if step.alert:
        r.alert(step.alert, host.name, f"{host.name}: {step.health.detail or step.alert}")
    if step.health.state is Health.FENCE_FAILED and step.health.attempts >= cfg.fence_attempts \
            and h.state is Health.FENCING:
        r.alert("needs_operator", host.name, f"{host.name}: fencing failed; check the host, "
                f"then run `fleet host confirm-down {host.name}`")


def _apply_event(r: _Round, event: Event, obs: Observation, cfg: FailoverConfig) -> None:
    if isinstance(event, FenceResult):
        _fence_result(r, event, cfg)
    elif isinstance(event, RecoverResult):
        _recover_result(r, event, cfg)
    elif isinstance(event, OperatorConfirm):
        _confirm(r, event.host, obs, cfg)
    elif isinstance(event, OperatorFence):
        h = r.hosts[event.host]
        if h.state in PRE_FENCE:
            r.set(event.host, start_fencing(h, cfg, r.now, reset=True))
            r.actions.append(Fence(event.host, 1, cfg.fence_timeout_s))
    else:
        h = r.hosts[event.host]
        if h.state in (Health.RECOVERED, Health.FENCE_FAILED):
            r.set(event.host, move(h, Health.ACTIVE, r.now, attempts=0, returned=False,
                                   confirmed_by="", detail="activated by operator"))
        elif h.state is not Health.ACTIVE:
            r.alert("refused", event.host, f"{event.host}: cannot activate while {h.state}")


def _fence_result(r: _Round, event: FenceResult, cfg: FailoverConfig) -> None:
    h = r.hosts[event.host]
    if h.state not in (Health.FENCING, Health.FENCE_FAILED):
        return
    if event.ok:
        r.set(event.host, move(h, Health.FENCED, r.now, confirmed_by="fence",
                               detail=event.detail or "power-off confirmed"))
        return
    if h.state is Health.FENCE_FAILED:
        return
    attempts = cfg.fence_attempts if event.needs_operator else h.attempts
    r.set(event.host, move(h, Health.FENCE_FAILED, r.now, attempts=attempts,
                           detail=event.detail or "fence failed"))
    r.alert("fence_failed", event.host, f"{event.host}: {event.detail or 'fence failed'}")
    if attempts >= cfg.fence_attempts:
        r.alert("needs_operator", event.host, f"{event.host}: fencing failed; check the host, "
                f"then run `fleet host confirm-down {event.host}`")


def _confirm(r: _Round, host: str, obs: Observation, cfg: FailoverConfig) -> None:
    h = r.hosts[host]
    if h.state not in PRE_FENCE and h.state is not Health.FENCING:
        return
    if _age(obs, r, host) < cfg.suspect_after_s:
        r.alert("refused", host, f"{host}: still heartbeating; refusing confirm-down")
        return
    if _witnessed(obs, r, host, cfg):
        r.alert("refused", host, f"{host}: its hypervisor still answers the witness probe; "
                f"refusing confirm-down (power it off, or `fleet host fence {host}`)")
        return
    r.set(host, move(h, Health.FENCED, r.now, confirmed_by="operator",
                     detail="confirmed down by operator"))


def _recover_result(r: _Round, event: RecoverResult, cfg: FailoverConfig) -> None:
    p = r.pending.pop(event.vm, None)
    if event.ok:
        return
    r.excluded.setdefault(event.vm, {})[event.target] = r.now + cfg.exclude_for_s
    source = p.source if p else "?"
    r.alert("restart_failed", event.vm,
            f"{event.vm}: restart on {event.target} failed ({event.detail}); from {source}")


def _recover(r: _Round, obs: Observation, cfg: FailoverConfig) -> list[str]:
    by_name = {vm.name: vm for vm in obs.vms}
    kept, expired = settle_pending(r.pending, by_name, cfg.recover_timeout_s, r.now)
    r.pending = kept
    for p in expired:
        r.alert("restart_timeout", p.vm, f"{p.vm}: no answer from {p.target}; re-planning")
    dead = frozenset(h for h, hh in r.hosts.items() if hh.state in CONFIRMED_OFF)
    targets = [h for h in obs.hosts if h.state == HostState.ACTIVE.value
               and r.hosts[h.name].state is Health.ACTIVE
               and _age(obs, r, h.name) < cfg.suspect_after_s]
    plan = plan_recovery(obs.vms, targets, dead, r.pending, r.excluded, r.now, obs.claims)
    for vm in plan.mark_down:
        why = "no host with room" if vm.ha else "not HA"
        r.actions.append(MarkDown(vm.name, vm.host, f"host {vm.host} is off; {why}"))
    for s in plan.restarts:
        r.actions.append(Recover(s.vm, s.source, s.target, s.priority))
        r.pending[s.vm] = Pending(s.vm, s.source, s.target, r.now)
    for host in sorted(dead):
        h = r.hosts[host]
        if h.state is Health.FENCED:
            h = move(h, Health.RECOVERING, r.now, detail="restarting HA VMs")
            r.set(host, h)
        if h.state is Health.RECOVERING and host not in plan.remaining:
            r.set(host, move(h, Health.RECOVERED, r.now, detail="recovery done"))
    return list(plan.unplaced)
