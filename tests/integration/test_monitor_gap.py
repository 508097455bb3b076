"""A monitor that could not read Redis, or that finds another Redis server answering (a
Sentinel promotion), holds nobody's silence against them: every host gets a full
``down_after_s`` watched from then on. Real Redis (the server's run id is read)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from fleet.store import Store
from tests.integration.test_monitor_epoch import Clock, Sent, fleet3, monitor

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    name = f"it-gap-{uuid.uuid4().hex[:8]}"
    yield name
    Store.connect(redis_url, name).purge()


def _states(store: Store) -> dict[str, str]:
    return {h.name: h.state for h in store.list_hosts()}


def _gaps(store: Store) -> list[dict[str, Any]]:
    return [e for _, e in store.journal.audit() if e["kind"] == "monitor.redis_gap"]


def test_after_a_blackout_silence_counts_from_the_next_round(redis_url: str,
                                                             prefix: str) -> None:
    sent: Sent = []
    clock = Clock(0.0)
    m = monitor(redis_url, prefix, "m", clock, sent)
    fleet3(m.store)
    assert m.tick() is not None
    clock.now = 30.0  # no round for 30 s: Redis could not be read; no beats arrived
    assert m.tick() is not None
    assert set(_states(m.store).values()) == {"active"} and not sent
    assert len(_gaps(m.store)) == 1
    clock.now = 31.0
    fleet3(m.store, ("h2", "h3"))  # h1 stays silent, now watched
    m.tick()
    clock.now = 33.0  # 3 s of watched silence, past down_after_s (2.5)
    fleet3(m.store, ("h2", "h3"))
    m.tick()
    assert _states(m.store)["h1"] != "active" and _states(m.store)["h2"] == "active"


def test_another_redis_server_answering_restarts_every_hosts_clock(
        redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: Sent = []
    clock = Clock(0.0)
    m = monitor(redis_url, prefix, "m", clock, sent)
    fleet3(m.store)
    assert m.tick() is not None
    clock.now = 1.0
    m.tick()
    monkeypatch.setattr("workers.monitor.server_id", lambda r: "promoted-replica")
    clock.now = 2.0  # past suspect_after_s (1.5) for every host since its last beat
    m.tick()
    assert set(_states(m.store).values()) == {"active"} and not sent
    assert _gaps(m.store)[-1]["detail"] == "another Redis server answers"
    clock.now = 3.0
    m.tick()  # the same server again: no new gap
    assert len(_gaps(m.store)) == 1
    clock.now = 5.0  # 3 s of silence since the promotion: judged now
    m.tick()
    assert set(_states(m.store).values()) != {"active"}
