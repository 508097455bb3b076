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
