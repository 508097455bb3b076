"""The hypervisor port: what fleet needs from a host's hypervisor, as a Protocol.

Adapters live in ``workers.hypervisors`` (``sim`` and ``libvirt``). They translate their
own errors and states into the exceptions and ``DomainState`` below, so nothing above an
adapter ever sees a libvirt type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from fleet.core.models import VM
    from fleet.core.nodefacts import NodeFacts


class DomainState(StrEnum):
    """A domain's state as reported by a hypervisor, in fleet's words."""

    RUNNING = "running"
    PAUSED = "paused"  # includes an incoming migration not yet switched over
    SHUTOFF = "shutoff"
    CRASHED = "crashed"
    OTHER = "other"


STOPPED_DOMAIN = frozenset({DomainState.SHUTOFF, DomainState.CRASHED})
"""Domain states of a guest that is defined but not running."""


class HypervisorError(Exception):
    """Base of hypervisor failures raised by adapters."""


class TransientError(HypervisorError):
    """Worth retrying: timeouts, lost connections, a busy job lock."""


class PermanentError(HypervisorError):
    """Retrying cannot help: CPU incompatible, unsupported, aborted by policy."""


class DomainGone(HypervisorError):
    """The domain does not exist on this hypervisor."""


class PoweredOff(HypervisorError):
    """The host itself has no power (a simulated host that was killed)."""


class DestinationError(TransientError):
    """The destination side failed; exclude it and re-plan."""


@dataclass(frozen=True)
class DomainInfo:
    """A domain as seen on one host."""

    name: str
    uuid: str
    state: DomainState
    vcpus: int
    memory_mib: int
    migrating: bool = False
    cancelled: bool = False  # running again after the hypervisor cancelled a switch-over


@dataclass(frozen=True)
class DomainSpec:
    """What is needed to define and start a domain."""

    name: str
    uuid: str
    vcpus: int
    memory_mib: int
    definition: str = ""
    dirty_mib_s: float = 0.0

    @classmethod
    def of(cls, vm: VM) -> DomainSpec:
        """The spec of a recorded VM: its stored definition."""
        return cls(vm.name, vm.uuid, vm.vcpus, vm.memory_mib, vm.definition, vm.dirty_mib_s)


@dataclass(frozen=True)
class MigrationTarget:
    """Where to migrate: the destination host's name and, for libvirt, its URI."""

    host: str
    uri: str = ""


@dataclass(frozen=True)
class MigrationParams:
    """Knobs of one migration, decided by policy."""

    bandwidth_mib_s: float = 0.0  # 0 means unlimited
    max_downtime_ms: int = 300
    auto_converge: bool = False
    postcopy: bool = False
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobStats:
    """A sample of a running migration job on the source."""

    processed_mib: float
    remaining_mib: float
    total_mib: float
    mib_s: float
    dirty_mib_s: float
    iteration: int
    elapsed_s: float
    expected_downtime_ms: float = 0.0


class Hypervisor(Protocol):
    """One host's hypervisor, as the agent on that host uses it."""

    host: str

    def list_domains(self) -> list[DomainInfo]:
        """Every domain this hypervisor knows, running or not."""
        ...

    def lookup(self, name: str) -> DomainInfo:
        """The named domain; raises ``DomainGone`` if absent."""
        ...

    def start(self, spec: DomainSpec) -> DomainInfo:
        """Define and start a domain."""
        ...

    def define(self, spec: DomainSpec) -> DomainInfo:
        """Define a domain without starting it (where a stopped VM now lives)."""
        ...

    def destroy(self, name: str) -> None:
        """Power off and undefine a domain; absent is fine."""
        ...

    def pause(self, name: str) -> None:
        """Suspend the guest's vCPUs; the domain stays defined and may be resumed or
        destroyed; raises ``DomainGone`` if absent."""
        ...

    def resume(self, name: str) -> None:
        """Resume a paused guest's vCPUs; raises ``DomainGone`` if absent."""
        ...

    def shutdown(self, name: str, timeout_s: float) -> None:
        """Stop a domain and keep its definition: ask the guest to shut down, and power it
        off if it still runs after ``timeout_s`` (0: power off at once)."""
        ...

    def migrate(self, name: str, target: MigrationTarget, params: MigrationParams) -> None:
        """Live-migrate ``name`` to ``target``; blocks until done, raises on failure."""
        ...

    def job_stats(self, name: str) -> JobStats | None:
        """The running migration job of ``name``, or None when there is none."""
        ...

    def abort_job(self, name: str) -> None:
        """Abort the running migration of ``name``; the domain keeps running here."""
        ...

    def start_postcopy(self, name: str) -> None:
        """Switch a running migration to post-copy."""
        ...

    def set_max_downtime(self, name: str, downtime_ms: int) -> None:
        """Raise the allowed downtime of a running migration."""
        ...

    def healthy(self) -> bool:
        """Whether the hypervisor answers."""
        ...

    def node_facts(self) -> NodeFacts | None:
        """The host's hardware and what it can run (None: this hypervisor cannot tell)."""
        ...

    def definition(self, name: str) -> str:
        """The domain's persistent definition, migratable form ("" if none is kept)."""
        ...

    def preflight(self, needs: Sequence[str], definition: str,
                  reported: dict[str, Any]) -> list[str]:
        """Why this host cannot take a guest with ``needs`` and ``definition`` (empty: it
        can); ``reported`` is the host's last reported facts."""
        ...

    def watch(self, wake: Callable[[str], None]) -> None:
        """Call ``wake(domain name)`` on every lifecycle event, from now on (also after a
        reconnect); must not block."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
