"""The kept placement state equals a fresh build after any sequence of store writes."""

from __future__ import annotations

import fakeredis
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.core.models import VM, Host
from fleet.core.planmodel import PlacementConfig
from fleet.store import Keys, Store
from workers.drain import fleet_state
from workers.planstate import KeptState

HOSTS = ["h1", "h2", "h3", "h4"]
VMS = [f"v{i}" for i in range(8)]

op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(VMS), st.sampled_from(HOSTS),
              st.integers(1, 4), st.integers(256, 4096), st.sampled_from(["", "g1", "g2"])),
    st.tuples(st.just("move"), st.sampled_from(VMS), st.sampled_from(HOSTS)),
    st.tuples(st.just("delete"), st.sampled_from(VMS)),
    st.tuples(st.just("state"), st.sampled_from(HOSTS),
              st.sampled_from(["active", "maintenance", "down"])),
    st.tuples(st.just("reserve"), st.sampled_from(HOSTS), st.sampled_from(["m1", "m2", "m3"]),
              st.integers(1, 4), st.integers(128, 2048)),
    st.tuples(st.just("release"), st.sampled_from(HOSTS), st.sampled_from(["m1", "m2", "m3"])),
    st.tuples(st.just("look")),
)


def _do(store: Store, kept: KeptState, step: tuple[object, ...]) -> None:
    kind = step[0]
    if kind == "put":
        _, name, host, cpu, mem, group = step
        rule = "anti-affinity" if group else ""
        store.put_vm(VM(str(name), "u", str(host), int(str(cpu)), int(str(mem)),
                        group=str(group), rule=rule))
    elif kind == "move" and store.find_vm(str(step[1])):
        store.update_vm(str(step[1]), host=str(step[2]))
    elif kind == "delete":
        store.delete_vm(str(step[1]))
    elif kind == "state":
        store.set_host_state(str(step[1]), str(step[2]))
    elif kind == "reserve":
        store.reserve(str(step[1]), str(step[2]), int(str(step[3])), int(str(step[4])))
    elif kind == "release":
        store.release(str(step[1]), str(step[2]))
    elif kind == "look":
        kept.get()


def _view(state: object) -> tuple[object, ...]:
    s = state
    return (list(s.free_cpu), list(s.free_mem), list(s.receiving),  # type: ignore[attr-defined]
            sorted((n, i) for n, (_, i) in s.placed.items()),  # type: ignore[attr-defined]
            {g: dict(c) for g, c in s.group_hosts.items() if sum(c.values())})  # type: ignore[attr-defined]


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(op, max_size=40))
def test_kept_state_matches_a_fresh_build(steps: list[tuple[object, ...]]) -> None:
    store = Store(fakeredis.FakeRedis(decode_responses=True), Keys("k"))
    for name in HOSTS:
        store.put_host(Host(name, 16, 32768))
    config = PlacementConfig()
    kept = KeptState(store, config)
    kept.get()
    for step in steps:
        _do(store, kept, step)
    assert _view(kept.get()) == _view(fleet_state(store, config))
    claims_seen = {(h, m) for h in HOSTS for m in store.claims_of(h)}
    assert set(kept._claims) == claims_seen


def test_changes_are_applied_without_rebuilding() -> None:
    store = Store(fakeredis.FakeRedis(decode_responses=True), Keys("k"))
    for name in HOSTS:
        store.put_host(Host(name, 16, 32768))
    kept = KeptState(store, PlacementConfig())
    kept.get()
    built = kept.rebuilds
    store.put_vm(VM("a", "u", "h1", 2, 1024))
    store.update_vm("a", host="h2")
    store.set_host_state("h3", "maintenance")
    store.reserve("h4", "m", 1, 512)
    kept.get()
    assert kept.rebuilds == built
    store.put_host(Host("h5", 8, 8192))  # a new host: only a rebuild knows it
    assert "h5" in kept.get().index and kept.rebuilds == built + 1


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(op, max_size=40), exclude=st.lists(st.sampled_from(HOSTS), max_size=2))
def test_a_single_move_is_placed_on_the_kept_state_as_on_a_fresh_read(
        steps: list[tuple[object, ...]], exclude: list[str]) -> None:
    from fleet.core.placement import pick_host
    from workers.drain import DrainPlanner

    store = Store(fakeredis.FakeRedis(decode_responses=True), Keys("k"))
    for name in HOSTS:
        store.put_host(Host(name, 16, 32768))
    config = PlacementConfig()
    planner = DrainPlanner(store, config)
    planner.place(VM("probe", "u", "h1", 1, 256), [])
    for step in steps:
        _do(store, planner.kept, step)
    vms = store.list_vms()
    for vm in vms:
        fresh = pick_host(vm, store.list_hosts(), store.usage(vms), exclude, vms=vms,
                          config=config)
        assert planner.place(vm, exclude) == fresh, vm
