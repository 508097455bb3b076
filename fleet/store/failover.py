"""Failover records in Redis: the monitor's kept state (hosts and the VM guard), its event
inbox and its lease."""

from __future__ import annotations

import json
from typing import Any

import redis

from fleet.core.lease import Lease, claim_lease
from fleet.store.keys import Keys


class FailoverStore:
    """What the monitors share; the leader alone writes the state."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r: Any = client
        self.keys = keys

    def load_state(self) -> dict[str, Any]:
        raw = self.r.get(self.keys.failover_state)
        return {} if raw is None else dict(json.loads(raw))

    def save_state(self, state: dict[str, Any]) -> None:
        self.r.set(self.keys.failover_state, json.dumps(state, sort_keys=True))

    def load_guard(self) -> dict[str, Any]:
        """The VM guard's watches (see ``fleet.core.vmguard``), by VM name."""
        raw = self.r.get(self.keys.vmguard_state)
        return {} if raw is None else dict(json.loads(raw))

    def save_guard(self, watches: dict[str, Any]) -> None:
        self.r.set(self.keys.vmguard_state, json.dumps(watches, sort_keys=True))

    def push(self, event: dict[str, Any]) -> None:
        """Queue an event (fence result, restart result, operator command) for the leader."""
        self.r.rpush(self.keys.failover_events, json.dumps(event, sort_keys=True))

    def drain(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Take every queued event, oldest first."""
        with self.r.pipeline() as pipe:
            pipe.lrange(self.keys.failover_events, 0, limit - 1)
            pipe.ltrim(self.keys.failover_events, limit, -1)
            raw, _ = pipe.execute()
        return [dict(json.loads(item)) for item in raw]

    def lease(self) -> Lease | None:
        raw = self.r.get(self.keys.monitor_lease)
        return None if raw is None else Lease(**json.loads(raw))

    def claim(self, me: str, now: float, ttl_s: float) -> Lease | None:
        """Renew or take the monitor lease (compare-and-set); None while another holds it."""
        key = self.keys.monitor_lease
        with self.r.pipeline() as pipe:
            try:
                pipe.watch(key)
                raw = pipe.get(key)
                current = None if raw is None else Lease(**json.loads(raw))
                wanted = claim_lease(current, me, now, ttl_s)
                if wanted is None:
                    pipe.unwatch()
                    return None
                pipe.multi()
                pipe.set(key, json.dumps(wanted.__dict__), px=int(ttl_s * 3000))
                pipe.execute()
                return wanted
            except redis.WatchError:
                return None

    def set_job(self, host: str, job_id: str) -> None:
        self.r.set(self.keys.failover_job(host), job_id)

    def job(self, host: str) -> str | None:
        value = self.r.get(self.keys.failover_job(host))
        return None if value is None else str(value)
