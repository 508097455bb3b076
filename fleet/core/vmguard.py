"""The VM guard: an HA VM that stops on a live host is started again, in place.

Host failover covers a host that dies. A guest can also die alone — QEMU crashes or is
OOM-killed, the guest powers itself off — while its host and agent are fine. Like
Masakari's instance monitor and Proxmox HA's ``started`` request, the guard compares what
fleet records with what each host's heartbeat reports. Pure: reports, ages and ``now``
are passed in.

* Judged: VMs recorded ``running`` (or ``stopped``) on a host that is ``active`` or in
  ``maintenance``, whose heartbeat is fresh, and that no job is moving.
* A ``running`` VM reported ``shutoff`` or ``crashed`` for ``grace_s`` in a row is down.
  An HA VM is started again on its host, at most ``max_restarts`` times per ``window_s``
  and one start at a time (the next waits ``start_timeout_s`` or a report of it
  running). Past the limit it is recorded ``stopped`` with one ``vm_restart_limit``
  alert. A non-HA VM is recorded ``stopped``.
* A ``stopped`` VM reported ``running`` for ``grace_s`` in a row (an operator started
  it by hand) is ``running`` again; if the guard had given up on it, its restart count
  starts afresh. A ``stopping`` VM (an operator's stop under way) is not judged.
* A VM its host does not list is not judged: its definition is gone or a move is
  settling, which is the reconciler's business. So is a paused VM. A VM that is not
  judged in a round starts its grace afresh when it is next seen stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from fleet.core.errors import InvalidInput
from fleet.core.failover_model import Alert
from fleet.core.hypervisor import STOPPED_DOMAIN
from fleet.core.models import VM, HostState, VMState

DEAD_STATES = frozenset(s.value for s in STOPPED_DOMAIN)
GUARDED_HOSTS = frozenset({HostState.ACTIVE.value, HostState.MAINTENANCE.value})


@dataclass(frozen=True)
class GuardConfig:
    """When a stopped VM counts as down, and how often it is started again."""

    enabled: bool = True
    grace_s: float = 2.0
    max_restarts: int = 3
    window_s: float = 600.0
    start_timeout_s: float = 30.0
    fresh_s: float = 3.0  # a heartbeat older than this says nothing (the host's own trouble)

    def __post_init__(self) -> None:
        if self.grace_s < 0 or self.window_s <= 0 or self.start_timeout_s <= 0:
            raise InvalidInput("vmguard: grace_s >= 0, window_s and start_timeout_s > 0")
        if self.max_restarts < 0:
            raise InvalidInput("vmguard: max_restarts must not be negative")

    @classmethod
    def from_mapping(cls, data: dict[str, Any], fresh_s: float) -> GuardConfig:
        """Build from a settings mapping (keys with a ``vmguard_`` prefix)."""
        known = cls.__dataclass_fields__
        values = {k.removeprefix("vmguard_"): v for k, v in data.items()
                  if k.startswith("vmguard_") and k.removeprefix("vmguard_") in known}
        return cls(**{**values, "fresh_s": fresh_s})


@dataclass(frozen=True)
class Watch:
    """What the guard remembers about one VM."""

    down_since: float | None = None  # first report of it stopped; None while it runs
    up_since: float | None = None  # first report of it running while recorded stopped
    starts: tuple[float, ...] = ()  # times of the restarts in the current window
    pending_until: float = 0.0  # a restart is in flight until then
    gave_up: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"down_since": self.down_since, "up_since": self.up_since,
                "starts": list(self.starts), "pending_until": self.pending_until,
                "gave_up": self.gave_up}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Watch:
        down, up = data.get("down_since"), data.get("up_since")
        return cls(None if down is None else float(down), None if up is None else float(up),
                   tuple(float(t) for t in data.get("starts", ())),
                   float(data.get("pending_until", 0.0)), bool(data.get("gave_up", False)))


@dataclass(frozen=True)
class StartInPlace:
    """Start ``vm`` again on ``host``, where it is defined and stopped."""

    vm: str
    host: str
    attempt: int


@dataclass(frozen=True)
class RecordState:
    """Record ``vm`` (on ``host``) as ``state``: what its host reports."""

    vm: str
    host: str
    state: str
    reason: str


GuardAction = StartInPlace | RecordState | Alert


@dataclass(frozen=True)
class GuardView:
    """One look at the fleet: records, host states, fresh reports and moving VMs."""

    vms: list[VM]
    host_states: dict[str, str]
    beat_age: dict[str, float]  # host -> seconds since its last heartbeat
    reports: dict[str, dict[str, str]]  # host -> {domain: state} from its last heartbeat
    moving: frozenset[str] = frozenset()


@dataclass
class GuardDecision:
    watches: dict[str, Watch]
    actions: list[GuardAction] = field(default_factory=list)


def _reported(view: GuardView, vm: VM, cfg: GuardConfig) -> str | None:
    """The domain state ``vm``'s host reports, or None if the VM is not judged now."""
    if vm.name in view.moving or view.host_states.get(vm.host) not in GUARDED_HOSTS:
        return None
    if view.beat_age.get(vm.host, float("inf")) >= cfg.fresh_s:
        return None
    return view.reports.get(vm.host, {}).get(vm.name)


def guard(view: GuardView, watches: dict[str, Watch], cfg: GuardConfig,
          now: float) -> GuardDecision:
    """Judge every VM once; the new watches and what to do."""
    decision = GuardDecision({})
    if not cfg.enabled:
        return decision
    for vm in view.vms:
        reported = _reported(view, vm, cfg)
        watch = watches.get(vm.name, Watch())
        if reported is None:  # unjudged: a later report starts its grace afresh
            watch = replace(watch, down_since=None, up_since=None)
        else:
            watch = _judge(vm, reported, watch, cfg, now, decision.actions)
        if watch != Watch():
            decision.watches[vm.name] = watch
    return decision


def _judge(vm: VM, reported: str, watch: Watch, cfg: GuardConfig, now: float,
           out: list[GuardAction]) -> Watch:
    starts = tuple(t for t in watch.starts if now - t < cfg.window_s)
    watch = replace(watch, starts=starts)
    if reported == "running":
        return _up(vm, watch, cfg, now, out)
    watch = replace(watch, up_since=None)
    if reported not in DEAD_STATES or vm.state != VMState.RUNNING.value or watch.gave_up:
        return watch
    since = now if watch.down_since is None else watch.down_since
    watch = replace(watch, down_since=since)
    if now - since < cfg.grace_s or now < watch.pending_until:
        return watch
    return _down(vm, reported, watch, cfg, now, out)


def _up(vm: VM, watch: Watch, cfg: GuardConfig, now: float, out: list[GuardAction]) -> Watch:
    if vm.state != VMState.STOPPED.value:
        return Watch(starts=watch.starts)
    since = now if watch.up_since is None else watch.up_since
    if now - since < cfg.grace_s:  # a report older than the stop may still say running
        return replace(watch, down_since=None, up_since=since)
    out.append(RecordState(vm.name, vm.host, VMState.RUNNING.value,
                           "its host reports it running"))
    return Watch(starts=() if watch.gave_up else watch.starts)  # an operator's start: afresh


def _down(vm: VM, reported: str, watch: Watch, cfg: GuardConfig, now: float,
          out: list[GuardAction]) -> Watch:
    if not vm.ha:
        out.append(RecordState(vm.name, vm.host, VMState.STOPPED.value,
                               f"{vm.host} reports it {reported}"))
        return replace(watch, down_since=None)
    if len(watch.starts) < cfg.max_restarts:
        out.append(StartInPlace(vm.name, vm.host, len(watch.starts) + 1))
        return replace(watch, starts=(*watch.starts, now),
                       pending_until=now + cfg.start_timeout_s)
    out.append(RecordState(vm.name, vm.host, VMState.STOPPED.value,
                           f"stopped {len(watch.starts) + 1} times within"
                           f" {cfg.window_s:.0f} s; not started again"))
    out.append(Alert("vm_restart_limit", vm.name,
                     f"{vm.name} on {vm.host} keeps stopping ({reported}): restart limit"
                     f" {cfg.max_restarts} per {cfg.window_s:.0f} s reached"))
    return replace(watch, down_since=None, gave_up=True)
