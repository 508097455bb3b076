"""Failover records in Redis: the monitor lease, the leader's kept state (hosts and the VM
guard), its event inbox, and the writes the leading monitor makes under its term.

The lease key's TTL is Redis's: one script claims it when absent (with the next epoch
from a counter) or renews it (``PEXPIRE``) while it still names the caller. Every write
of the leader is a transaction that WATCHes the lease key and commits only while it
still holds the leader's ``Term``; otherwise nothing is written and ``LostLease`` is
raised.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from fleet.core.lease import SEPARATOR, LostLease, Term, ttl_ms
from fleet.core.models import VM, Host, Job
from fleet.store.changes import cas_vm, changed
from fleet.store.keys import Keys
from fleet.store.records import Guard, GuardFailed, cas, dump, watch

CLAIM = """
local raw = redis.call('GET', KEYS[1])
if raw then
  local sep = string.find(raw, SEPARATOR, 1, true)
  if sep and string.sub(raw, sep + 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return raw
  end
  return false
end
local value = redis.call('INCR', KEYS[2]) .. SEPARATOR .. ARGV[1]
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
""".replace("SEPARATOR", json.dumps(SEPARATOR))
"""Claim or renew the lease. KEYS: lease, epoch counter; ARGV: holder, TTL in ms.
Returns the lease value now naming the caller, or nil while another holds it."""

Queue = Callable[[Any], None]
"""Queues commands on a transaction pipeline."""


@contextmanager
def _lost(term: Term) -> Iterator[None]:
    try:
        yield
    except GuardFailed as exc:
        raise LostLease(f"{term.holder} lost the lease of epoch {term.epoch}") from exc


class FailoverStore:
    """What the monitors share; the leader alone writes the state, under its term."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r: Any = client
        self.keys = keys
        self._claim = self.r.register_script(CLAIM)

    # -- the lease ------------------------------------------------------------------
    def lease(self) -> Term | None:
        """The current term, or None while nobody leads."""
        return Term.decode(self.r.get(self.keys.monitor_lease))

    def superseded(self, epoch: int) -> bool:
        """Whether a term newer than ``epoch`` has begun (0: an unknown term, never)."""
        newest = self.r.get(self.keys.monitor_epoch)
        return bool(epoch) and newest is not None and int(newest) > epoch

    def fence_refusal(self, host: str, attempt: int, epoch: int) -> str:
        """Why a fence of ``host`` (attempt ``attempt``, decided under ``epoch``) must not
        run, or "" when the leader's saved state decided exactly it: ``host`` is
        ``fencing`` at that attempt under the current epoch (one read of both)."""
        newest, raw = self.r.mget([self.keys.monitor_epoch, self.keys.failover_state])
        if not epoch or newest is None or int(newest) != epoch:
            return (f"decided under monitor epoch {epoch or 'none'}, but the current epoch"
                    f" is {newest or 'none'}")
        health = dict(json.loads(raw) if raw else {}).get("hosts", {}).get(host, {})
        if health.get("state") != "fencing" or health.get("attempts") != attempt:
            return (f"the monitor's state has {host} {health.get('state', 'unwatched')}"
                    f" (attempt {health.get('attempts', 0)}), not fencing at attempt {attempt}")
        return ""

    def claim(self, me: str, ttl_s: float) -> Term | None:
        """Renew ``me``'s lease or take a lapsed one; None while another holds it."""
        raw = self._claim(keys=[self.keys.monitor_lease, self.keys.monitor_epoch],
                          args=[me, ttl_ms(ttl_s)])
        return Term.decode(raw)

    def guard(self, term: Term) -> Guard:
        """The guard of a write made under ``term`` (see ``fleet.store.records.cas``)."""
        return self.keys.monitor_lease, term.encode()

    def hold(self, term: Term) -> None:
        """Raise ``LostLease`` unless the lease still names ``term`` (a check only)."""
        if self.r.get(self.keys.monitor_lease) != term.encode():
            raise LostLease(f"{term.holder} lost the lease of epoch {term.epoch}")

    def _write(self, term: Term, key: str, queue: Queue, retries: int = 10) -> None:
        """Queue writes to ``key`` (and others) in one transaction that commits only
        while the lease names ``term``."""
        with _lost(term):
            for _ in range(retries):
                with self.r.pipeline() as pipe:
                    try:
                        watch(pipe, key, self.guard(term))
                        pipe.multi()
                        queue(pipe)
                        pipe.execute()
                        return
                    except redis.WatchError:
                        continue
        self.hold(term)
        raise LostLease(f"too much contention on {key} under epoch {term.epoch}")

    # -- kept state and inbox ---------------------------------------------------------
    def load_state(self) -> dict[str, Any]:
        raw = self.r.get(self.keys.failover_state)
        return {} if raw is None else dict(json.loads(raw))

    def save_state(self, state: dict[str, Any], term: Term, consumed: int = 0) -> None:
        """Save the leader's state and drop the ``consumed`` oldest inbox events that
        decided it, in one write under ``term``."""
        def queue(pipe: Any) -> None:
            pipe.set(self.keys.failover_state, json.dumps(state, sort_keys=True))
            if consumed:
                pipe.ltrim(self.keys.failover_events, consumed, -1)

        self._write(term, self.keys.failover_state, queue)

    def load_guard(self) -> dict[str, Any]:
        """The VM guard's watches (see ``fleet.core.vmguard``), by VM name."""
        raw = self.r.get(self.keys.vmguard_state)
        return {} if raw is None else dict(json.loads(raw))

    def save_guard(self, watches: dict[str, Any], term: Term) -> None:
        payload = json.dumps(watches, sort_keys=True)
        self._write(term, self.keys.vmguard_state,
                    lambda pipe: pipe.set(self.keys.vmguard_state, payload))

    def push(self, event: dict[str, Any]) -> None:
        """Queue an event (fence result, restart result, operator command) for the leader."""
        self.r.rpush(self.keys.failover_events, json.dumps(event, sort_keys=True))

    def peek(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The queued events, oldest first, left queued: ``save_state`` consumes them."""
        return [dict(json.loads(item))
                for item in self.r.lrange(self.keys.failover_events, 0, limit - 1)]

    # -- records the leader writes ------------------------------------------------------
    def set_host_state(self, name: str, state: str, term: Term) -> str | None:
        """Set host ``name``'s state under ``term``; the state it replaced, or None if it
        was already ``state`` (or the host is unknown)."""
        before: dict[str, str] = {}

        def mutate(host: Host) -> Host | None:
            if host.state == state:
                return None
            before["state"], host.state = host.state, state
            return host

        with _lost(term):
            done = cas(self.r, self.keys.host(name), Host, mutate, guard=self.guard(term),
                       extra=lambda pipe, h: changed(pipe, self.keys, "host_state",
                                                     host=h.name, state=h.state))
        return None if done is None else before["state"]

    def cas_vm(self, name: str, mutate: Callable[[VM], VM | None], term: Term) -> VM | None:
        """``Store.cas_vm`` under ``term``: compare-and-set a VM record, raising its
        ``version`` (None: absent, or declined)."""
        with _lost(term):
            return cas_vm(self.r, self.keys, name, mutate, guard=self.guard(term))

    def update_job(self, job_id: str, mutate: Callable[[Job], Job | None],
                   term: Term) -> Job | None:
        """Compare-and-set a job record under ``term`` (None: absent, or declined)."""
        with _lost(term):
            return cas(self.r, self.keys.job(job_id), Job, mutate, guard=self.guard(term))

    def open_job(self, host: str, job: Job, term: Term) -> Job:
        """Create ``job`` (its id assigned here) as ``host``'s failover job under ``term``."""
        job.id = uuid.uuid4().hex[:16]

        def queue(pipe: Any) -> None:
            pipe.set(self.keys.job(job.id), dump(job))
            pipe.zadd(self.keys.jobs, {job.id: job.created_at})
            pipe.set(self.keys.failover_job(host), job.id)

        self._write(term, self.keys.failover_job(host), queue)
        return job

    def publish_fence(self, by: str, kinds: dict[str, str], at: float) -> None:
        """Record which fence agent kind (per host, ``*`` for the rest) ``by`` runs."""
        doc = {"by": by, "at": at, "agents": kinds}
        self.r.set(self.keys.fence_config, json.dumps(doc, sort_keys=True))

    def fence_config(self) -> dict[str, Any] | None:
        """What the fencing process published (``publish_fence``), or None."""
        raw = self.r.get(self.keys.fence_config)
        return None if raw is None else dict(json.loads(raw))

    def job(self, host: str) -> str | None:
        value = self.r.get(self.keys.failover_job(host))
        return None if value is None else str(value)
