"""Discovery: the agent keeps fleet's VM records in step with what its libvirt holds.

libvirt is the truth. Every ``inventory_interval_s``, and at once on a domain lifecycle
event, the agent of a host looks at each domain there (``observe``) and at records of
its host that it no longer holds (``scan``):

- a domain fleet has no record of is **adopted**: a VM record from its definition
  (name, UUID, size, disks, interfaces, needs; ``ha``/``priority``/``group`` from
  fleet's metadata element), written only if the name is still free;
- a running domain recorded on another host that is alive and, asked now through its
  own hypervisor, does not run it **moved** out of band: the record follows
  (compare-and-set on the old host); a stopped one follows only if the recorded host
  does not hold it at all;
- a domain recorded here as stopped that runs (``virsh start``) is recorded running, a
  non-HA one recorded running that shut off is recorded stopped (an HA VM that stops is
  the VM guard's: it starts it again);
- the definition of a domain recorded here is read again; when it changed (``virsh
  edit``, ``setmaxmem --config``, a migration) it is stored with a new
  ``definition_version`` and the record's size follows (``edited``);
- a record of this host whose domain is gone from every live host for
  ``inventory_gone_after_s`` is removed (``undefined``).

Each is an audit event ``vm.observed`` (``change``, ``by`` the host). VMs that a job or
restart holds, and records of hosts in failover, are left alone. Conflicts — one UUID
under two names, a name whose UUID differs, a MAC used by two VMs — are alerts, once
each, and change nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fleet.core.domainfacts import DomainFacts, read_domain, take_definition
from fleet.core.errors import InvalidInput
from fleet.core.hypervisor import STOPPED_DOMAIN, DomainInfo, DomainState, Hypervisor
from fleet.core.hypervisor import HypervisorError as HvError
from fleet.core.models import VM, HostState, VMState
from fleet.core.settlement import Seen
from fleet.store import Store
from workers.inventory import Locate, owner_copy

log = logging.getLogger(__name__)
SETTLED_RECORD = frozenset({VMState.RUNNING.value, VMState.STOPPED.value, VMState.DOWN.value})
LIVE_HOSTS = frozenset({HostState.ACTIVE.value, HostState.MAINTENANCE.value})


def record_from(facts: DomainFacts, info: DomainInfo, host: str, xml: str) -> VM:
    """A VM record for a domain fleet has never seen."""
    attrs = facts.attrs
    state = VMState.STOPPED if info.state in STOPPED_DOMAIN else VMState.RUNNING
    vm = VM(name=info.name, uuid=info.uuid, host=host, vcpus=info.vcpus,
            memory_mib=info.memory_mib, state=state.value,
            ha=attrs.get("ha", "") in ("yes", "true", "1"),
            priority=_int(attrs.get("priority", "0")), group=attrs.get("group", ""),
            rule=attrs.get("rule", ""), definition_version=1)
    return take_definition(vm, xml, facts)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


@dataclass
class Discovery:
    """One host's discovery (its agent's hypervisor)."""

    store: Store
    hv: Hypervisor
    locate: Locate
    shared: tuple[str, ...] = ()
    gone_after_s: float = 10.0
    fresh_s: float = 5.0
    clock: Callable[[], float] = time.time
    in_flux: set[str] = field(default_factory=set)  # domains seen in a migration
    _absent: dict[str, float] = field(default_factory=dict)
    _alerted: set[tuple[str, str]] = field(default_factory=set)

    @property
    def host(self) -> str:
        return self.hv.host

    # -- rounds --------------------------------------------------------------------
    def live(self) -> bool:
        """Whether this host's record says it is active or in maintenance (a host in
        failover, or not registered, leaves its records to failover and registration)."""
        me = self.store.find_host(self.host)
        return me is not None and me.state in LIVE_HOSTS

    def scan(self) -> list[str]:
        """One full round; returns the VMs whose records changed."""
        if not self.live():
            return []
        domains = self.hv.list_domains()
        changed = [n for n in (self.observe(d) for d in domains) if n]
        held = {d.name for d in domains}
        changed += self._absences(held)
        return changed

    def observe_name(self, name: str) -> str | None:
        """Look at one domain (a lifecycle event named it)."""
        if not self.live():
            return None
        try:
            info = self.hv.lookup(name)
        except HvError:
            self.in_flux.discard(name)
            return None  # gone or unreachable: the next full scan decides
        return self.observe(info)

    def observe(self, info: DomainInfo) -> str | None:
        """Bring the record of one domain of this host in step; its name if written."""
        if not self._settled(info):
            return None
        vm = self.store.find_vm(info.name)
        if vm is None:
            return self._adopt(info)
        if vm.uuid and info.uuid and vm.uuid != info.uuid:
            self._alert("name_clash", info.name, f"{info.name} on {self.host} has UUID "
                        f"{info.uuid}; fleet's {info.name} on {vm.host} has {vm.uuid}")
            return None
        if vm.state not in SETTLED_RECORD:
            return None
        if vm.host == self.host:
            powered = self._powered(vm, info)
            refreshed = self._refresh(powered or vm)
            return vm.name if powered is not None else refreshed
        return self._follow(vm, info)

    def _settled(self, info: DomainInfo) -> bool:
        """Neither in a migration (then it is looked at again soon: it lands or leaves
        shortly) nor held by a job."""
        if info.migrating:
            self.in_flux.add(info.name)
            return False
        self.in_flux.discard(info.name)
        return self.store.lock_owner(info.name) is None

    # -- adoption --------------------------------------------------------------------
    def _definition(self, name: str) -> str:
        """The domain's definition as libvirt has it now ("" if it cannot be read)."""
        try:
            return self.hv.definition(name)
        except HvError as exc:
            log.warning("cannot read the definition of %s on %s: %s", name, self.host, exc)
            return ""

    def _read(self, name: str, xml: str) -> DomainFacts | None:
        try:
            return read_domain(xml, self.shared)
        except InvalidInput as exc:
            log.warning("cannot read the definition of %s on %s: %s", name, self.host, exc)
            return None

    def _adopt(self, info: DomainInfo) -> str | None:
        if info.state not in (*STOPPED_DOMAIN, DomainState.RUNNING):
            return None  # paused: an incoming migration, or an operator's pause
        xml = self._definition(info.name)
        facts = (self._read(info.name, xml) if xml else None) or DomainFacts(
            info.name, info.uuid, info.vcpus, info.memory_mib)
        twin = next((v for v in self.store.list_vms() if v.uuid == info.uuid), None)
        if twin is not None and twin.name == info.name:
            return None  # its record was written meanwhile (fleet created it)
        if twin is not None:
            self._alert("uuid_conflict", info.uuid, f"UUID {info.uuid} is {info.name} on "
                        f"{self.host} and {twin.name} on {twin.host}")
            return None
        vm = record_from(facts, info, self.host, xml)
        if not self.store.add_vm(vm):
            return None
        self._observed(vm, "adopted", state=vm.state)
        self._check_macs(vm)
        return vm.name

    # -- records of this host ----------------------------------------------------------
    def _powered(self, vm: VM, info: DomainInfo) -> VM | None:
        """Power changed by hand here: a VM recorded stopped that runs (``virsh start``) is
        recorded running; a non-HA VM recorded running whose domain shut off (``virsh
        shutdown``, a crash) is recorded stopped. An HA VM that stops is the VM guard's:
        it starts it again."""
        if vm.state == VMState.STOPPED.value and info.state is DomainState.RUNNING:
            now, was, change = VMState.RUNNING.value, VMState.STOPPED.value, "started"
        elif vm.state == VMState.RUNNING.value and info.state in STOPPED_DOMAIN \
                and not vm.ha:
            now, was, change = VMState.STOPPED.value, VMState.RUNNING.value, "stopped"
        else:
            return None

        def mutate(current: VM) -> VM | None:
            if current.host != self.host or current.state != was \
                    or (current.ha and now == VMState.STOPPED.value):
                return None
            current.state = now
            return current

        changed = self.store.cas_vm(vm.name, mutate)
        if changed is not None:
            self._observed(changed, change, state=now)
        return changed

    def _refresh(self, vm: VM) -> str | None:
        self._absent.pop(vm.name, None)
        xml = self._definition(vm.name)
        if not xml or xml == vm.definition:  # the usual case: nothing to parse
            return None
        facts = self._read(vm.name, xml)
        if facts is None:
            return None
        old_size = (vm.vcpus, vm.memory_mib, vm.devices, vm.needs)

        def mutate(current: VM) -> VM | None:
            if current.host != self.host or current.version != vm.version:
                return None
            take_definition(current, xml, facts)
            current.definition_version += 1
            return current

        new = self.store.cas_vm(vm.name, mutate)
        if new is None:
            return None
        first = vm.definition_version == 0  # fleet wrote it; libvirt's own form read now
        if not first and (new.vcpus, new.memory_mib, new.devices, new.needs) != old_size:
            self._observed(new, "edited", vcpus=new.vcpus, memory_mib=new.memory_mib,
                           definition_version=new.definition_version)
            self._check_macs(new)
        return new.name

    def _follow(self, vm: VM, info: DomainInfo) -> str | None:
        """A domain here that fleet records on another host: the record follows if that
        host, alive and asked now, does not run it (nor, for a stopped one, hold it)."""
        if info.state not in (*STOPPED_DOMAIN, DomainState.RUNNING) or not self._alive(vm.host):
            return None  # in between, or the recorded host cannot say: failover's business
        there = owner_copy(self.store, self.locate, vm)
        if there in (DomainState.RUNNING, Seen.UNKNOWN):
            return None  # two copies (the stray sweep's business), or no answer
        if info.state in STOPPED_DOMAIN and there is not Seen.ABSENT:
            return None  # a leftover definition: the stray sweep's business
        state = VMState.RUNNING if info.state is DomainState.RUNNING else VMState.STOPPED
        moved = self.store.place_vm(vm.name, self.host, state.value, on=vm.host,
                                    states=SETTLED_RECORD)
        if moved is None:
            return None
        self._observed(moved, "moved", source=vm.host, state=state.value)
        self._refresh(moved)
        return vm.name

    def _alive(self, host: str) -> bool:
        """``host`` is active or in maintenance and its agent's heartbeat is fresh."""
        beat = self.store.heartbeat(host)
        record = self.store.find_host(host)
        return beat is not None and self.clock() - float(beat.get("at", 0)) <= self.fresh_s \
            and record is not None and record.state in LIVE_HOSTS

    def _absences(self, held: set[str]) -> list[str]:
        gone = []
        now = self.clock()
        mine = [v for v in self.store.list_vms() if v.host == self.host]
        for vm in mine:
            if vm.name in held or vm.state not in SETTLED_RECORD \
                    or self.store.lock_owner(vm.name) is not None:
                self._absent.pop(vm.name, None)
                continue
            since = self._absent.setdefault(vm.name, now)
            if now - since >= self.gone_after_s and not self._reported_anywhere(vm.name) \
                    and self.store.forget_vm(vm.name, vm.version):
                self._absent.pop(vm.name, None)
                self._observed(vm, "undefined", state=vm.state)
                gone.append(vm.name)
        return gone

    def _reported_anywhere(self, name: str) -> bool:
        for host in self.store.list_hosts():
            beat = self.store.heartbeat(host.name)
            if beat and any(d.get("name") == name for d in beat.get("domains", [])):
                return True
        return False

    # -- conflicts and audit -------------------------------------------------------------
    def _check_macs(self, vm: VM) -> None:
        macs = {n.get("mac") for n in vm.devices.get("nics", []) if n.get("mac")}
        if not macs:
            return
        for other in self.store.list_vms():
            if other.name == vm.name:
                continue
            shared = macs & {n.get("mac") for n in other.devices.get("nics", [])}
            for mac in sorted(m for m in shared if m):
                self._alert("duplicate_mac", mac, f"MAC {mac} is used by {vm.name} "
                            f"({vm.host}) and {other.name} ({other.host})")

    def _alert(self, kind: str, subject: str, message: str) -> None:
        if (kind, subject) in self._alerted:
            return
        self._alerted.add((kind, subject))
        self.store.emit("", "alert", alert=kind, subject=subject, message=message,
                        by=self.host)
        self.store.journal.count("alerts", kind=kind)

    def _observed(self, vm: VM, change: str, **fields: object) -> None:
        log.info("observed %s %s on %s", vm.name, change, self.host)
        self.store.emit("", "vm.observed", vm=vm.name, change=change, host=self.host,
                        by=self.host, **fields)
