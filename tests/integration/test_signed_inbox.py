"""The failover monitor's inbox on a real Redis: an operator's command or a fence result
counts only when signed by the control plane; forged ones raise an alert and do nothing."""

from __future__ import annotations

import os
from typing import Any

import pytest

from fleet.store import Store
from tests.integration.test_monitor_epoch import Clock, Sent, fleet3, monitor, prefix
from workers.signing import AGENT, CONTROL, Keyring, seal_event

pytestmark = pytest.mark.integration
__all__ = ["prefix"]  # the fixture, shared


def _fencing(store: Store) -> list[str]:
    return [h.name for h in store.list_hosts() if h.state == "fencing"]


def test_forged_inbox_events_are_ignored_and_signed_ones_act(redis_url: str,
                                                             prefix: str) -> None:
    keys = os.environ["FLEET_KEYS_DIR"]
    sent: Sent = []
    m = monitor(redis_url, prefix, "m", Clock(0.0), sent)
    m.keyring = Keyring.load(keys, CONTROL)
    store = m.store
    fleet3(store)
    assert m.tick() is not None and _fencing(store) == []

    host_key = Keyring.load(keys, AGENT)
    store.failover.push({"type": "fence_now", "host": "h2", "by": "someone"})
    store.failover.push(seal_event(host_key, {"type": "fence_now", "host": "h3", "by": "h1"}))
    fleet3(store)
    m.tick()
    assert _fencing(store) == [] and sent == []
    alerts = [e for _, e in store.journal.audit() if e.get("alert") == "unsigned_event"]
    assert len(alerts) == 2
    assert {a["subject"] for a in alerts} == {"h2", "h3"}
    assert store.failover.peek() == []  # consumed, not left to be retried

    store.failover.push(seal_event(m.keyring, {"type": "fence_now", "host": "h2",
                                               "by": "cli:op"}))
    fleet3(store)
    m.tick()
    assert _fencing(store) == ["h2"]
    fences: list[dict[str, Any]] = [kw for _, task, kw in sent if task == "fleet.host.fence"]
    assert [f["host"] for f in fences] == ["h2"]
    assert store.failover.fence_refusal("h2", fences[0]["attempt"], fences[0]["epoch"]) == ""
