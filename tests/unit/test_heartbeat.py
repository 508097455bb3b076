"""Heartbeats of a multi-host agent: one round, every powered host, one bad host alone."""

from __future__ import annotations

from fleet.core.hypervisor import DomainInfo, HypervisorError
from fleet.store import Store
from workers.heartbeat import beat_hosts
from workers.hypervisors.sim import SimHypervisor


class _Broken(SimHypervisor):
    def list_domains(self) -> list[DomainInfo]:
        raise HypervisorError("libvirt said no")


class _Crashing(SimHypervisor):
    def healthy(self) -> bool:
        raise RuntimeError("a bug in one adapter")


def test_every_powered_host_beats_in_one_round(store: Store) -> None:
    hvs = [SimHypervisor(store.r, store.keys, f"h{i}") for i in range(3)]
    hvs[1].power_off()
    hvs.append(_Broken(store.r, store.keys, "h3"))
    hvs.append(_Crashing(store.r, store.keys, "h4"))
    store.clock = lambda: 123.0
    assert beat_hosts(store, hvs, lambda h: f"{h}/agent", ttl_s=5) == 3
    beats = {h: store.heartbeat(h) for h in ("h0", "h1", "h2", "h3", "h4")}
    assert beats["h1"] is None and beats["h4"] is None  # no power; a bug: nothing sent
    h0, h3 = beats["h0"], beats["h3"]
    assert h0 is not None and h0["agent"] == "h0/agent" and h0["at"] == 123.0
    assert h0["hypervisor_ok"] is True and h0["error"] == ""
    assert h3 is not None and h3["domains"] == [] and h3["error"] == "libvirt said no"
    assert 0 < store.r.pttl(store.keys.heartbeat("h0")) <= 5000


def test_a_survey_of_simulated_hosts_beats_as_each_host_would(store: Store) -> None:
    from fleet.core.models import VM
    from workers.heartbeat import beat_surveyed
    from workers.hypervisors.sim import survey
    from workers.inventory import create_vm

    hvs = [SimHypervisor(store.r, store.keys, f"h{i}") for i in range(3)]
    for i, hv in enumerate(hvs):
        create_vm(store, hv, VM(f"vm{i}", f"00000000-0000-0000-0000-00000000000{i}", hv.host,
                                1, 256))
    hvs[0].pause("vm0")
    hvs[1].power_off()
    assert beat_surveyed(store, survey(store.r, store.keys, ["h0", "h1", "h2"]),
                         lambda h: f"{h}/agent", ttl_s=5) == 2
    surveyed = {h: store.heartbeat(h) for h in ("h0", "h1", "h2")}
    beat_hosts(store, hvs, lambda h: f"{h}/agent", ttl_s=5)
    each = {h: store.heartbeat(h) for h in ("h0", "h1", "h2")}
    assert surveyed["h1"] is None and each["h1"] is None
    for host in ("h0", "h2"):
        got, want = surveyed[host], each[host]
        assert got is not None and want is not None
        assert {k: v for k, v in got.items() if k != "at"} == {
            k: v for k, v in want.items() if k != "at"}
    assert each["h0"] is not None and each["h0"]["domains"] == [
        {"name": "vm0", "state": "paused"}]
