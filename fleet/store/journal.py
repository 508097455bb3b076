"""The journal: events per job, the audit stream, and counters for metrics.

Every state change of hosts, jobs and moves, every request and fencing action lands in
the audit stream with a timestamp; progress samples go only to their job's stream.
Counters (moves finished, bytes migrated, failovers, fencing results) are Redis hashes
that the metrics endpoint reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from fleet.store.keys import Keys

EVENTS_MAXLEN = 10_000
AUDIT_MAXLEN = 100_000
QUIET_KINDS = frozenset({"move.progress"})


class Journal:
    """Append-only records of what happened."""

    def __init__(self, client: redis.Redis, keys: Keys, clock: Callable[[], float]) -> None:
        self.r: Any = client
        self.keys = keys
        self.clock = clock

    def emit(self, job_id: str, kind: str, /, **fields: Any) -> None:
        entry = {"kind": kind, "job": job_id, "at": repr(self.clock()),
                 "data": json.dumps(fields, default=str)}
        with self.r.pipeline(transaction=False) as pipe:
            if job_id:
                pipe.xadd(self.keys.job_events(job_id), entry, maxlen=EVENTS_MAXLEN,
                          approximate=True)
            if kind not in QUIET_KINDS:
                pipe.xadd(self.keys.audit, entry, maxlen=AUDIT_MAXLEN, approximate=True)
            pipe.execute()

    def job_events(self, job_id: str, after: str = "-", block_ms: int | None = None,
                   ) -> list[tuple[str, dict[str, Any]]]:
        """Events of a job after stream id ``after`` (exclusive), optionally blocking."""
        key = self.keys.job_events(job_id)
        if block_ms is None:
            start = "-" if after == "-" else f"({after}"
            rows = self.r.xrange(key, start, "+")
        else:
            found = self.r.xread({key: "0-0" if after == "-" else after}, block=block_ms)
            rows = found[0][1] if found else []
        return [(eid, _event(fields)) for eid, fields in rows]

    def audit(self, count: int = 1000) -> list[tuple[str, dict[str, Any]]]:
        """The newest ``count`` audit events, oldest first."""
        rows = self.r.xrevrange(self.keys.audit, "+", "-", count=count)
        return [(eid, _event(fields)) for eid, fields in reversed(rows)]

    def trim_audit(self, before: float) -> int:
        """Drop audit events older than ``before`` (epoch seconds); how many went."""
        return int(self.r.xtrim(self.keys.audit, minid=f"{int(before * 1000)}-0",
                                approximate=False))

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` to counter ``name`` with ``labels``."""
        field = json.dumps(labels, sort_keys=True)
        self.r.hincrbyfloat(self.keys.counter(name), field, amount)

    def counters(self, name: str) -> list[tuple[dict[str, str], float]]:
        raw = self.r.hgetall(self.keys.counter(name))
        return [(json.loads(k), float(v)) for k, v in sorted(raw.items())]


def _event(fields: dict[str, str]) -> dict[str, Any]:
    data = json.loads(fields.get("data", "{}"))
    return {**data, "kind": fields["kind"], "job": fields["job"], "at": float(fields["at"])}
