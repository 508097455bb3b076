"""Hypothesis strategies and an independent invariant checker for placement tests."""

from __future__ import annotations

from collections import Counter, defaultdict

from hypothesis import strategies as hs

from fleet.core.fleetstate import FleetState
from fleet.core.planmodel import PlanHost, PlanVM

RULE_CHOICES = ("", "affinity", "anti-affinity", "rack-affinity", "rack-anti-affinity",
                "fault-domain")


@hs.composite
def hosts(draw: hs.DrawFn, min_size: int = 1, max_size: int = 12) -> list[PlanHost]:
    n = draw(hs.integers(min_size, max_size))
    out = []
    for i in range(n):
        out.append(PlanHost(
            name=f"h{i}", vcpus=draw(hs.sampled_from([2, 4, 8, 16])),
            memory_mib=draw(hs.sampled_from([2048, 4096, 8192, 16384])),
            state=draw(hs.sampled_from(["active"] * 5 + ["maintenance", "down"])),
            rack=f"r{draw(hs.integers(0, 3))}",
            labels=draw(hs.sampled_from([{}, {"ssd": "yes"}])),
            arch=draw(hs.sampled_from(["x86_64", "aarch64"])),
        ))
    return out


@hs.composite
def requests(draw: hs.DrawFn, max_size: int = 25, prefix: str = "v") -> list[PlanVM]:
    n = draw(hs.integers(0, max_size))
    out = []
    for i in range(n):
        rule = draw(hs.sampled_from(RULE_CHOICES))
        out.append(PlanVM(
            name=f"{prefix}{i}", vcpus=draw(hs.sampled_from([0.5, 1, 2, 4])),
            memory_mib=draw(hs.sampled_from([256, 512, 1024, 2048, 4096])),
            group=f"g{draw(hs.integers(0, 2))}-{rule}" if rule else "", rule=rule,
            domain=str(draw(hs.integers(0, 2))) if rule == "fault-domain" else "",
            required_labels=draw(hs.sampled_from([{}] * 6 + [{"ssd": "yes"}])),
            arch=draw(hs.sampled_from(["", "", "", "x86_64"])),
        ))
    return out


def violations(st: FleetState) -> list[str]:
    """Overcommitted hosts and broken group rules in ``st``, checked from scratch."""
    cpu: Counter[int] = Counter()
    mem: Counter[int] = Counter()
    groups: dict[str, list[tuple[int, PlanVM]]] = defaultdict(list)
    for vm, i in st.placed.values():
        cpu[i] += round(vm.vcpus * 1000)
        mem[i] += vm.memory_mib
        if vm.group:
            groups[vm.group].append((i, vm))
    bad = [f"{st.hosts[i].name} overcommitted" for i in range(len(st.hosts))
           if cpu[i] > st.cap_cpu[i] or mem[i] > st.cap_mem[i]]
    for g, members in groups.items():
        for k, (a, va) in enumerate(members):
            for b, vb in members[k + 1:]:
                ra, rb = st.rack_of[a], st.rack_of[b]
                broken = {"affinity": a != b, "anti-affinity": a == b,
                          "rack-affinity": ra != rb, "rack-anti-affinity": ra == rb,
                          "fault-domain": ra == rb and va.domain != vb.domain}[va.rule]
                if broken:
                    bad.append(f"group {g}: {va.name} and {vb.name}")
    return bad
