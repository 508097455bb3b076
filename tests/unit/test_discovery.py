"""Discovery and host registration: records follow what a host's hypervisor holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from fleet.core.hypervisor import DomainGone, DomainInfo, DomainState
from fleet.core.models import VM, Host
from fleet.core.nodefacts import NodeFacts
from fleet.store import Store
from workers.discovery import Discovery
from workers.hostfacts import Registration, publish_host

XML = """<domain type='kvm'><name>{name}</name><uuid>{uuid}</uuid>
<memory unit='MiB'>{mib}</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>
<devices><interface type='network'><mac address='{mac}'/><source network='lan'/>
</interface></devices>{meta}</domain>"""
HA = ("<metadata><fleet:vm xmlns:fleet='https://fleet.dev/xmlns/vm/1' ha='yes' "
      "priority='5' group='db'/></metadata>")


def xml(name: str, uuid: str = "", mib: int = 64, mac: str = "52:54:00:00:00:01",
        meta: str = "") -> str:
    return XML.format(name=name, uuid=uuid or f"u-{name}", mib=mib, mac=mac, meta=meta)


@dataclass
class FakeHost:
    """A host's hypervisor as discovery uses it: domains with states and definitions."""

    host: str
    domains: dict[str, tuple[DomainState, str]] = field(default_factory=dict)
    migrating: set[str] = field(default_factory=set)

    def add(self, name: str, state: DomainState = DomainState.RUNNING, **kw: Any) -> None:
        self.domains[name] = (state, xml(name, **kw))

    def _info(self, name: str) -> DomainInfo:
        state, text = self.domains[name]
        uuid = text.split("<uuid>")[1].split("</uuid>")[0]
        return DomainInfo(name, uuid, state, 1, 64, migrating=name in self.migrating)

    def list_domains(self) -> list[DomainInfo]:
        return [self._info(n) for n in self.domains]

    def lookup(self, name: str) -> DomainInfo:
        if name not in self.domains:
            raise DomainGone(name)
        return self._info(name)

    def definition(self, name: str) -> str:
        return self.domains[name][1]

    def node_facts(self) -> NodeFacts | None:
        return NodeFacts(arch="x86_64", cpu_model="EPYC", cpus=4, memory_mib=8192,
                         networks=("lan",))

    def preflight(self, needs: Sequence[str], definition: str,
                  reported: dict[str, Any]) -> list[str]:
        return []

    def watch(self, wake: Callable[[str], None]) -> None:
        return None


@pytest.fixture
def two(store: Store) -> Store:
    for name in ("h1", "h2"):
        store.put_host(Host(name, 8, 16384))
    return store


def beat(store: Store, host: str, **domains: str) -> None:
    store.beat(host, {"domains": [{"name": n, "state": s} for n, s in domains.items()]}, 60)


def observed(store: Store) -> list[tuple[str, str]]:
    return [(e["vm"], e["change"]) for _, e in store.journal.audit()
            if e["kind"] == "vm.observed"]


def alerts(store: Store) -> list[str]:
    return [e["alert"] for _, e in store.journal.audit() if e["kind"] == "alert"]


def disc(store: Store, hv: FakeHost, clock: Callable[[], float] | None = None,
         others: dict[str, FakeHost] | None = None) -> Discovery:
    """``hv``'s discovery; other hosts are asked through ``others`` (absent: empty)."""
    hosts = {**(others or {}), hv.host: hv}

    def locate(host: Host) -> FakeHost:
        return hosts.setdefault(host.name, FakeHost(host.name))

    return Discovery(store, hv, locate, gone_after_s=10.0,  # type: ignore[arg-type]
                     fresh_s=5.0, **({"clock": clock} if clock else {}))


def test_an_unknown_domain_is_adopted_with_its_metadata_once(two: Store) -> None:
    h1 = FakeHost("h1")
    h1.add("hand1", meta=HA)
    h1.add("cold", DomainState.SHUTOFF, mac="52:54:00:00:00:02")
    d = disc(two, h1)
    assert sorted(d.scan()) == ["cold", "hand1"]
    vm = two.get_vm("hand1")
    assert (vm.host, vm.state, vm.ha, vm.priority, vm.group) == ("h1", "running", True, 5, "db")
    assert vm.needs == ["arch:x86_64", "machine:pc-i440fx-7.2", "net:lan"]
    assert vm.devices["nics"][0]["network"] == "lan" and vm.definition_version == 1
    assert two.get_vm("cold").state == "stopped"
    assert observed(two) == [("cold", "adopted"), ("hand1", "adopted")] or \
        observed(two) == [("hand1", "adopted"), ("cold", "adopted")]
    assert d.scan() == []  # nothing new: no second adoption, no event
    assert len(two.list_vms()) == 2


def test_a_running_domain_moved_out_of_band_takes_its_record_along(two: Store) -> None:
    two.put_vm(VM("web", "u-web", "h1", 1, 64, definition=xml("web")))
    h1, h2 = FakeHost("h1"), FakeHost("h2")
    h1.add("web")
    h2.add("web")
    beat(two, "h1")  # its heartbeat no longer lists web, but h1 asked now runs it
    assert disc(two, h2, others={"h1": h1}).scan() == []  # two copies, not a move
    del h1.domains["web"]
    two.r.delete(two.keys.heartbeat("h1"))
    assert disc(two, h2, others={"h1": h1}).scan() == []  # h1 silent: failover decides
    beat(two, "h1", web="running")  # a heartbeat a moment old still lists it
    assert disc(two, h2, others={"h1": h1}).scan() == ["web"]
    assert (two.get_vm("web").host, two.get_vm("web").state) == ("h2", "running")
    assert ("web", "moved") in observed(two)


def test_a_stopped_copy_follows_only_when_the_recorded_host_does_not_hold_it(
        two: Store) -> None:
    two.put_vm(VM("db", "u-db", "h1", 1, 64, state="stopped", definition=xml("db")))
    h1, h2 = FakeHost("h1"), FakeHost("h2")
    h1.add("db", DomainState.SHUTOFF)
    h2.add("db", DomainState.SHUTOFF)
    beat(two, "h1")
    assert disc(two, h2, others={"h1": h1}).scan() == []  # a leftover: the stray sweep's
    del h1.domains["db"]
    assert disc(two, h2, others={"h1": h1}).scan() == ["db"]
    assert (two.get_vm("db").host, two.get_vm("db").state) == ("h2", "stopped")


def test_an_edited_definition_is_stored_with_a_new_version(two: Store) -> None:
    h1 = FakeHost("h1")
    h1.add("app")
    d = disc(two, h1)
    d.scan()
    h1.add("app", DomainState.SHUTOFF, mib=96)  # virsh setmaxmem --config
    assert d.scan() == ["app"]
    vm = two.get_vm("app")
    assert (vm.memory_mib, vm.definition_version) == (96, 2) and "96" in vm.definition
    assert ("app", "edited") in observed(two)


def test_a_record_whose_domain_is_gone_everywhere_is_forgotten_after_the_grace(
        two: Store) -> None:
    now = [1000.0]
    h1 = FakeHost("h1")
    h1.add("tmp")
    d = disc(two, h1, clock=lambda: now[0])
    d.scan()
    del h1.domains["tmp"]
    beat(two, "h2", tmp="running")  # reported elsewhere: not gone
    now[0] += 11
    assert d.scan() == [] and d.scan() == []
    beat(two, "h2")
    two.lock_vm("tmp", "job-1")
    assert d.scan() == []  # a job holds it
    two.release_vm("tmp", "job-1")
    assert d.scan() == []  # the grace starts again after the job
    now[0] += 11
    assert d.scan() == ["tmp"]
    assert two.find_vm("tmp") is None
    assert ("tmp", "undefined") in observed(two)


def test_a_record_written_while_adopting_is_not_a_conflict(two: Store) -> None:
    """fleet's own create_vm writes the record right after starting the domain: between
    discovery's lookup of the name and its look for the UUID, the record appears."""
    h1 = FakeHost("h1")
    h1.add("new")
    real_list = two.list_vms

    def created_meanwhile() -> list[VM]:
        two.put_vm(VM("new", "u-new", "h1", 1, 64))
        return real_list()

    two.list_vms = created_meanwhile  # type: ignore[method-assign]
    assert disc(two, h1).scan() == []
    assert alerts(two) == [] and observed(two) == []


def test_conflicts_are_alerts_that_change_nothing(two: Store) -> None:
    two.put_vm(VM("web", "u-other", "h2", 1, 64))
    two.put_vm(VM("db", "u-twin", "h2", 1, 64))
    h1 = FakeHost("h1")
    h1.add("web")  # same name, another UUID
    h1.add("twin", uuid="u-twin")  # the same UUID under another name
    d = disc(two, h1)
    assert d.scan() == [] and d.scan() == []
    assert two.get_vm("web").host == "h2" and two.find_vm("twin") is None
    assert sorted(alerts(two)) == ["name_clash", "uuid_conflict"]  # once each, two scans


def test_a_duplicate_mac_is_an_alert(two: Store) -> None:
    h1 = FakeHost("h1")
    h1.add("a", mac="52:54:00:00:00:09")
    h1.add("b", mac="52:54:00:00:00:09")
    disc(two, h1).scan()
    assert two.find_vm("a") is not None and two.find_vm("b") is not None
    assert alerts(two) == ["duplicate_mac"]


def test_a_host_in_failover_discovers_nothing(two: Store) -> None:
    two.set_host_state("h1", "down")
    h1 = FakeHost("h1")
    h1.add("x")
    assert disc(two, h1).scan() == [] and two.find_vm("x") is None


def test_a_host_registers_with_capacity_from_its_facts_or_configured(store: Store) -> None:
    hv = FakeHost("h9")
    host = publish_host(store, hv, Registration("libvirt"))  # type: ignore[arg-type]
    assert (host.vcpus, host.memory_mib, host.capacity_from) == (4, 8192, "node")
    assert store.get_host("h9").node["networks"] == ["lan"] or \
        store.get_host("h9").node["networks"] == ("lan",)
    store.set_host_state("h9", "maintenance")
    host = publish_host(store, hv, Registration("libvirt", vcpus=2))  # type: ignore[arg-type]
    assert (host.vcpus, host.memory_mib, host.capacity_from, host.state) == (
        2, 8192, "configured", "maintenance")


def test_a_sim_host_keeps_the_capacity_it_was_given(store: Store) -> None:
    from workers.hypervisors.sim import SimHypervisor

    store.put_host(Host("s1", 64, 1024))
    host = publish_host(store, SimHypervisor(store.r, store.keys, "s1"), Registration("sim"))
    assert (host.vcpus, host.memory_mib) == (64, 1024)
    fresh = publish_host(store, SimHypervisor(store.r, store.keys, "s2"), Registration("sim"))
    assert (fresh.vcpus, fresh.memory_mib) == (16, 32768)


def test_a_stopped_vm_started_by_hand_is_recorded_running(two: Store) -> None:
    two.put_vm(VM("svc", "u-svc", "h1", 1, 64, state="stopped", definition=xml("svc")))
    h1 = FakeHost("h1")
    h1.add("svc", DomainState.SHUTOFF)
    d = disc(two, h1)
    d.scan()
    assert two.get_vm("svc").state == "stopped"
    h1.add("svc")  # virsh start
    assert d.observe_name("svc") == "svc"
    assert two.get_vm("svc").state == "running" and ("svc", "started") in observed(two)


def test_the_first_read_of_a_definition_fleet_wrote_is_not_an_edit(two: Store) -> None:
    two.put_vm(VM("mine", "u-mine", "h1", 1, 32, definition="<domain/>"))  # fleet's form
    h1 = FakeHost("h1")
    h1.add("mine")
    d = disc(two, h1)
    assert d.scan() == ["mine"]
    vm = two.get_vm("mine")
    assert (vm.memory_mib, vm.definition_version, vm.needs) == (
        64, 1, ["arch:x86_64", "machine:pc-i440fx-7.2", "net:lan"])
    assert observed(two) == []


def test_a_non_ha_vm_shut_down_by_hand_is_recorded_stopped_an_ha_one_is_not(
        two: Store) -> None:
    two.put_vm(VM("plain", "u-plain", "h1", 1, 64, definition=xml("plain")))
    two.put_vm(VM("guarded", "u-guarded", "h1", 1, 64, ha=True, definition=xml("guarded")))
    h1 = FakeHost("h1")
    h1.add("plain", DomainState.SHUTOFF)
    h1.add("guarded", DomainState.SHUTOFF)
    disc(two, h1).scan()
    assert two.get_vm("plain").state == "stopped" and ("plain", "stopped") in observed(two)
    assert two.get_vm("guarded").state == "running"  # the VM guard starts it again


def test_a_domain_in_a_migration_is_left_and_looked_at_again(two: Store) -> None:
    h1 = FakeHost("h1")
    h1.add("arriving", DomainState.PAUSED)
    h1.migrating.add("arriving")
    d = disc(two, h1)
    assert d.scan() == [] and d.in_flux == {"arriving"}
    h1.add("arriving")  # switched over: running, no job
    h1.migrating.clear()
    assert d.observe_name("arriving") == "arriving" and d.in_flux == set()
    h1.migrating.add("leaving")
    h1.add("leaving")
    d.scan()
    del h1.domains["leaving"]  # it left: looked up no more
    assert d.observe_name("leaving") is None and d.in_flux == set()
