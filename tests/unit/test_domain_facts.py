"""Reading domain definitions and host capabilities; what a guest needs of a host."""

from __future__ import annotations

import pytest

from fleet.core.domainfacts import needs, read_domain, vm_attrs, with_metadata
from fleet.core.errors import InvalidInput
from fleet.core.nodefacts import NodeFacts, offers, passthrough, read_node, shortfall

# A definition as libvirt 9.0 returns it (persistent, migratable), trimmed.
DOMAIN = """<domain type='kvm'>
  <name>hand1</name><uuid>6b3c3f4e-1111-4222-8333-123456789abc</uuid>
  <memory unit='KiB'>65536</memory><vcpu placement='static'>2</vcpu>
  <memoryBacking><hugepages><page size='2' unit='MiB'/></hugepages></memoryBacking>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>
  <cpu mode='custom' match='exact' check='partial'><model fallback='forbid'>Skylake-Client</model>
    <numa><cell id='0' cpus='0-1' memory='65536' unit='KiB'/></numa></cpu>
  <numatune><memory mode='strict' nodeset='1'/></numatune>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/hand1.qcow2'/>
      <backingStore type='file'><format type='qcow2'/>
        <source file='/var/lib/libvirt/images/base.qcow2'/><backingStore/></backingStore>
      <target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='/mnt/nfs/data.img'/><target dev='vdb' bus='virtio'/></disk>
    <disk type='network' device='disk'><driver name='qemu' type='raw'/>
      <source protocol='rbd' name='pool/vol'/><target dev='vdc' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/></disk>
    <interface type='network'><mac address='52:54:00:09:35:83'/>
      <source network='fleet-lan'/><model type='virtio'/></interface>
    <hostdev mode='subsystem' type='pci' managed='yes'><source>
      <address domain='0x0000' bus='0x41' slot='0x00' function='0x0'/></source></hostdev>
    <interface type='bridge'><mac address='52:54:00:AA:00:01'/>
      <source bridge='br0'/></interface>
  </devices>
  <metadata><fleet:vm xmlns:fleet="https://fleet.dev/xmlns/vm/1" ha="yes" priority="7"/>
  </metadata>
</domain>"""


def test_a_definition_reads_as_facts() -> None:
    facts = read_domain(DOMAIN, shared_prefixes=("/mnt/nfs/",))
    assert (facts.name, facts.vcpus, facts.memory_mib) == ("hand1", 2, 64)
    assert (facts.machine, facts.cpu_model, facts.hugepages_kib) == (
        "pc-i440fx-7.2", "Skylake-Client", 2048)
    assert (facts.numa_cells, facts.numa_pinned) == (1, True)
    vda, vdb, vdc = facts.disks  # the empty CD-ROM drive is not a disk
    assert vda.backing == ("/var/lib/libvirt/images/base.qcow2",) and not vda.shared
    assert vda.format == "qcow2" and vdb.shared and vdc.shared
    assert [(n.mac, n.network, n.bridge) for n in facts.nics] == [
        ("52:54:00:09:35:83", "fleet-lan", ""), ("52:54:00:aa:00:01", "", "br0")]
    assert facts.attrs == {"ha": "yes", "priority": "7"}
    assert facts.hostdevs == 1 and facts.devices()["numa"] == 1


def test_needs_name_networks_machine_cpu_hugepages_and_local_disks() -> None:
    assert needs(read_domain(DOMAIN, shared_prefixes=("/mnt/nfs/",))) == [
        "arch:x86_64", "bridge:br0", "cpu:Skylake-Client",
        "disk:/var/lib/libvirt/images/hand1.qcow2", "emulator:/usr/bin/qemu-system-x86_64",
        "hugepages:2048",
        "machine:pc-i440fx-7.2", "net:fleet-lan"]


def test_an_unchecked_default_cpu_is_not_a_need() -> None:
    xml = DOMAIN.replace("check='partial'", "check='none'")
    assert not any(n.startswith("cpu:") for n in needs(read_domain(xml)))


@pytest.mark.parametrize("bad", ["not xml", "<network><name>x</name></network>"])
def test_something_else_is_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        read_domain(bad)


def test_metadata_is_written_once_and_read_back() -> None:
    xml = with_metadata(DOMAIN, vm_attrs(ha=False, priority=3, group="db", rule=""))
    xml = with_metadata(xml, vm_attrs(ha=True, priority=4, group="db", rule="affinity"))
    assert xml.count("fleet.dev/xmlns/vm/1") == 1
    assert read_domain(xml).attrs == {"ha": "yes", "priority": "4", "group": "db",
                                      "rule": "affinity"}


CAPS = """<capabilities><host><cpu><arch>x86_64</arch><model>EPYC</model>
  <vendor>AMD</vendor><feature name='x2apic'/><feature name='svm'/></cpu>
  <topology><cells num='2'>
    <cell id='0'><memory unit='KiB'>8388608</memory>
      <pages unit='KiB' size='4'>2097152</pages><pages unit='KiB' size='2048'>16</pages>
      <cpus num='2'><cpu id='0'/><cpu id='1'/></cpus></cell>
    <cell id='1'><memory unit='KiB'>8388608</memory>
      <pages unit='KiB' size='2048'>0</pages><cpus num='2'><cpu id='2'/><cpu id='3'/></cpus>
    </cell></cells></topology></host>
  <guest><arch name='x86_64'><emulator>/usr/bin/qemu-system-x86_64</emulator>
    <machine maxCpus='255'>pc-i440fx-7.2</machine>
    <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine></arch></guest>
  <guest><arch name='i686'><machine>isapc</machine></arch></guest>
</capabilities>"""
DOMCAPS = """<domainCapabilities><cpu><mode name='custom' supported='yes'>
  <model usable='yes'>Skylake-Client</model><model usable='no'>Icelake-Server</model>
</mode></cpu></domainCapabilities>"""
INFO = ["x86_64", 16384, 4, 2596, 2, 1, 4, 1]


def _node(**kw: object) -> NodeFacts:
    return read_node(INFO, CAPS, domcaps_xml=DOMCAPS, free_memory_b=2 << 30,
                     networks=kw.get("networks", ("fleet-lan",)),  # type: ignore[arg-type]
                     bridges=("br0",))


def test_node_facts_from_libvirt_documents() -> None:
    node = _node()
    assert (node.arch, node.cpu_model, node.cpus, node.memory_mib) == ("x86_64", "EPYC", 4,
                                                                        16384)
    assert (node.cores, node.free_memory_mib) == (4, 2048)
    assert [(c.id, c.cpus, c.memory_mib, c.hugepages) for c in node.numa_cells] == [
        (0, 2, 8192, {"2048": 16}), (1, 2, 8192, {"2048": 0})]
    assert node.machines == ("pc", "pc-i440fx-7.2")  # i686's isapc is another arch
    assert node.cpu_models == ("Skylake-Client",)
    assert node.emulators == ("/usr/bin/qemu-system-x86_64",)
    assert NodeFacts.from_dict(node.to_dict()) == node


def test_a_host_offering_everything_passes_and_one_lacking_a_network_says_so() -> None:
    wants = needs(read_domain(DOMAIN, shared_prefixes=("/mnt/nfs/", "/var/lib/libvirt/")))
    assert shortfall(wants, offers(_node().to_dict())) == []
    assert shortfall(wants, offers(_node(networks=()).to_dict())) == [
        "network fleet-lan is not active there"]


def test_a_local_disk_is_a_reason_everywhere() -> None:
    wants = needs(read_domain(DOMAIN))
    assert "local disk /var/lib/libvirt/images/hand1.qcow2 is not shared (a storage move" \
        " is needed)" in shortfall(wants, offers(_node().to_dict()))


def test_a_need_of_an_unknown_kind_is_not_checked() -> None:
    offered = offers(_node().to_dict())
    assert shortfall(["net:fleet-lan", "tpm:2.0"], offered) == []
    assert shortfall(["emulator:/opt/qemu"], offered) == ["emulator /opt/qemu is not there"]


def _pci(driver: str, cls: str) -> str:
    return (f"<device><name>pci_x</name><driver><name>{driver}</name></driver>"
            f"<capability type='pci'><class>{cls}</class></capability></device>")


def test_devices_bound_for_passthrough_are_counted() -> None:
    assert passthrough([_pci("vfio-pci", "0x030200"), _pci("vfio-pci", "0x030000"),
                        _pci("vfio-pci", "0x020000"), _pci("nvidia", "0x030000"),
                        _pci("virtio-pci", "0xffff00")]) == {"gpu": 2, "pci": 1}


def test_live_placement_sees_numa_cells_and_devices_libvirt_reported() -> None:
    from fleet.core.models import VM, Host
    from fleet.core.planmodel import plan_host, plan_vm

    node = _node().to_dict() | {"devices": {"gpu": 2, "pci": 1}}
    host = Host("h1", 4, 16384, node=node, capacity_from="node")
    planned = plan_host(host)
    assert [(c.vcpus, c.memory_mib) for c in planned.numa_cells] == [(2, 8192), (2, 8192)]
    assert planned.gpus == 3
    configured = plan_host(Host("h1", 8, 4096, node=node, capacity_from="configured"))
    assert configured.numa_cells == ()  # a configured capacity says nothing of cells
    facts = read_domain(DOMAIN)
    vm = VM("hand1", facts.uuid, "h1", 2, 64, devices=facts.devices())
    assert (plan_vm(vm).numa, plan_vm(vm).gpus) == (1, 1.0)
