"""What the CLI's views say of VMs whose host is not well."""

from __future__ import annotations

from fleet.cli.views import shown_state, vm_rows
from fleet.core.models import VM, Host
from fleet.store import Store


def test_a_vm_of_a_silent_or_failed_host_says_so(store: Store) -> None:
    for name in ("h1", "h2", "h3"):
        store.put_host(Host(name, 8, 8192))
    store.beat("h1", {}, 60)
    store.beat("h3", {}, 60)
    store.set_host_state("h3", "fenced")
    for i, host in enumerate(("h1", "h2", "h3")):
        store.put_vm(VM(f"v{i}", f"u{i}", host, 1, 64))
    rows = {r["name"]: r for r in vm_rows(store)}
    assert [rows[f"v{i}"]["host_state"] for i in range(3)] == ["active", "down", "fenced"]
    assert [shown_state(rows[f"v{i}"]) for i in range(3)] == [
        "running", "running (host down)", "running (host fenced)"]
    assert rows["v1"]["state"] == "running"  # the record itself is untouched


def test_jobs_are_found_by_state_and_age_with_a_count_of_the_rest(store: Store) -> None:
    from fleet.core.models import JobKind, Move

    now = [1000.0]
    store.clock = lambda: now[0]
    made = []
    for i in range(5):
        now[0] = 1000.0 + 100 * i
        made.append(store.create_move_job(JobKind.MIGRATE, "t", [Move("", "", f"v{i}", "h1")]))
    store.update_job(made[4].id, lambda j: setattr(j, "state", "failed") or j)
    newest, more = store.find_jobs(limit=2)
    assert [j.id for j in newest] == [made[4].id, made[3].id] and more == 3
    failed, more = store.find_jobs(states=["failed"])
    assert [j.id for j in failed] == [made[4].id] and more == 0
    recent, more = store.find_jobs(since=1250.0, batch=1)
    assert [j.id for j in recent] == [made[4].id, made[3].id] and more == 0


def test_durations_and_ages_read_as_people_write_them() -> None:
    import pytest

    from fleet.cli.common import parse_duration
    from fleet.cli.views import human_age
    from fleet.core.errors import InvalidInput

    assert [parse_duration("--since", t) for t in ("90", "90s", "30m", "12h", "7d")] == [
        90, 90, 1800, 43200, 604800]
    for bad in ("soon", "inf", "1e309d", "-5m", ""):
        with pytest.raises(InvalidInput):
            parse_duration("--since", bad)
    assert [human_age(s) for s in (5, 75, 7300, 200000)] == ["5s", "1m", "2h", "2d"]
