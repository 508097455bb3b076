"""Domain records: hosts, VMs, jobs and moves, with their states and JSON-able forms.

Records are plain dataclasses. ``to_dict``/``from_dict`` give the flat JSON shapes the
store writes and the CLI prints; the shapes are part of fleet's scripting contract.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, Self


class HostState(StrEnum):
    """Lifecycle of a host as fleet sees it (failover adds its own states later)."""

    ACTIVE = "active"
    MAINTENANCE = "maintenance"
    DOWN = "down"


class VMState(StrEnum):
    """Where a VM stands as fleet records it."""

    RUNNING = "running"
    MIGRATING = "migrating"
    STOPPING = "stopping"  # an operator's stop is under way
    STOPPED = "stopped"
    DOWN = "down"


class JobKind(StrEnum):
    """What a job does."""

    MIGRATE = "migrate"
    DRAIN = "drain"
    RETURN = "return"
    FAILOVER = "failover"


class JobState(StrEnum):
    """Lifecycle of a job; terminal states are final."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class MoveState(StrEnum):
    """Lifecycle of one VM move; see ``fleet.core.lifecycle`` for the allowed transitions."""

    PENDING = "pending"
    CLAIMED = "claimed"
    MIGRATING = "migrating"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_JOB_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
TERMINAL_MOVE_STATES = frozenset({MoveState.SUCCEEDED, MoveState.FAILED, MoveState.CANCELLED})


class _Record:
    """Mixin giving dataclasses a JSON-able dict form that ignores unknown keys."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Host(_Record):
    """A KVM host: capacity, state, labels and how to reach its hypervisor."""

    name: str
    vcpus: int
    memory_mib: int
    state: str = HostState.ACTIVE.value
    labels: dict[str, str] = field(default_factory=dict)
    address: str = ""
    migration_uri: str = ""
    driver: str = "sim"
    node: dict[str, Any] = field(default_factory=dict)  # facts read from the hypervisor
    capacity_from: str = "configured"  # "node": vcpus/memory derive from ``node``


@dataclass
class VM(_Record):
    """A guest fleet manages; ``definition`` is the hypervisor's own description of it."""

    name: str
    uuid: str
    host: str
    vcpus: int
    memory_mib: int
    state: str = VMState.RUNNING.value
    ha: bool = False
    priority: int = 0
    group: str = ""
    rule: str = ""  # the group's rule: affinity, anti-affinity, ...
    definition: str = ""
    dirty_mib_s: float = 0.0
    policy: dict[str, Any] = field(default_factory=dict)  # per-VM migration policy overrides
    devices: dict[str, Any] = field(default_factory=dict)  # disks and nics of its definition
    needs: list[str] = field(default_factory=list)  # what a host must offer (pre-flight)
    definition_version: int = 0  # grows each time the definition is read anew from a host
    version: int = 0  # grows with every write of the record (compare-and-set marker)


@dataclass
class Progress(_Record):
    """A sample of a running migration, as published to the CLI, events and Flower."""

    percent: float = 0.0
    processed_mib: float = 0.0
    remaining_mib: float = 0.0
    total_mib: float = 0.0
    mib_s: float = 0.0
    dirty_mib_s: float = 0.0
    iteration: int = 0
    downtime_ms: float = 0.0
    eta_s: float = 0.0
    elapsed_s: float = 0.0

    def summary(self) -> str:
        """One line for Flower's result column and logs."""
        return (
            f"{self.percent:.0f}% {self.mib_s:.0f} MiB/s it{self.iteration}"
            f" eta {self.eta_s:.1f}s"
        )


@dataclass
class Move(_Record):
    """One VM moving from ``source`` to ``destination``: a state machine in the store."""

    id: str
    job_id: str
    vm: str
    source: str
    destination: str = ""
    target: str = ""  # the destination the operator asked for, if any
    planned: str = ""  # the destination a plan proposed; placement decides if it fails
    state: str = MoveState.PENDING.value
    token: str = ""
    runner: str = ""
    task_id: str = ""  # the Celery task running the move (Flower, result backend)
    attempt: int = 0
    error: str = ""
    excluded: list[str] = field(default_factory=list)
    created_at: float = 0.0
    dispatched_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    lease_until: float = 0.0
    progress: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_MOVE_STATES


@dataclass
class Job(_Record):
    """A unit of work an operator or the monitor asked for; it owns one or more moves."""

    id: str
    kind: str
    state: str = JobState.PENDING.value
    requested_by: str = ""
    target: str = ""
    concurrency: int = 1
    cancel_requested: bool = False
    moves: list[str] = field(default_factory=list)
    error: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_JOB_STATES
