"""The state store: hosts, VMs, jobs, moves, claims and events in Redis.

Moves are claimed with a compare-and-set on their record and a random token; whoever
holds the token may advance the move, everyone else gets ``None`` and must do nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Collection
from typing import Any

import redis
from redis.lock import Lock

from fleet.core.errors import NotFound
from fleet.core.lifecycle import ACTIVE_MOVE_STATES, can_move
from fleet.core.models import VM, Host, Job, Move, MoveState
from fleet.store import connection, ledger
from fleet.store.capacity import Capacity
from fleet.store.changes import CHANGES_MAXLEN, cas_vm, changed
from fleet.store.failover import FailoverStore
from fleet.store.jobindex import JobIndex, queue_index
from fleet.store.jobs import JobRecords
from fleet.store.journal import Journal
from fleet.store.keys import Keys
from fleet.store.records import cas, dump, load

Clock = Callable[[], float]


def redis_answers(url: str, timeout_s: float = 1.0) -> bool:
    """Whether a Redis server answers at ``url`` (for Sentinel: the master)."""
    return connection.answers(url, timeout_s)


class Store(Capacity, JobRecords, JobIndex):
    """Typed access to fleet's records under one key prefix."""

    def __init__(self, client: redis.Redis, keys: Keys, clock: Clock = time.time,
                 ids: Callable[[], str] | None = None) -> None:
        self.r: Any = client  # decode_responses=True: every reply is str
        self.keys = keys
        self.clock = clock
        if ids is not None:
            self.ids = ids
        self.journal = Journal(client, keys, self.now)
        self.failover = FailoverStore(client, keys)

    def now(self) -> float:
        """The store's clock (tests may replace ``clock``)."""
        return self.clock()

    @classmethod
    def connect(cls, url: str, prefix: str, max_connections: int = connection.MAX_CONNECTIONS,
                ride_out_s: float = 0.0) -> Store:
        """A store on its own bounded pool (``store.connection``): a plain Redis URL or a
        Sentinel-watched master. Long-running processes pass ``ride_out_s`` (settings'
        ``redis_ride_out_s``) so a Redis restart or failover delays their commands
        instead of failing them; the CLI fails at once."""
        return cls(connection.client(url, max_connections, ride_out_s=ride_out_s), Keys(prefix))

    # -- hosts ---------------------------------------------------------------
    def put_host(self, host: Host) -> None:
        with self.r.pipeline() as pipe:
            pipe.set(self.keys.host(host.name), dump(host))
            pipe.sadd(self.keys.hosts, host.name)
            changed(pipe, self.keys, "host", host=host.name)
            pipe.execute()

    def find_host(self, name: str) -> Host | None:
        return load(Host, self.r.get(self.keys.host(name)))

    def get_host(self, name: str) -> Host:
        host = self.find_host(name)
        if host is None:
            raise NotFound(f"unknown host {name!r}")
        return host

    def list_hosts(self) -> list[Host]:
        names = sorted(self.r.smembers(self.keys.hosts))
        raws = self.r.mget([self.keys.host(n) for n in names]) if names else []
        return [h for h in (load(Host, raw) for raw in raws) if h is not None]

    def set_host_state(self, name: str, state: str) -> Host:
        def mutate(host: Host) -> Host:
            host.state = state
            return host

        before = self.get_host(name).state
        updated = cas(self.r, self.keys.host(name), Host, mutate,
                      extra=lambda pipe, h: changed(pipe, self.keys, "host_state", host=h.name,
                                                    state=h.state))
        if updated is None:
            raise NotFound(f"unknown host {name!r}")
        if before != state:
            self.emit("", "host.state", host=name, old=before, new=state)
        return updated

    def beat(self, host: str, info: dict[str, Any], ttl_s: float) -> None:
        self.beat_many({host: info}, ttl_s)

    def beat_many(self, infos: dict[str, dict[str, Any]], ttl_s: float) -> None:
        """Heartbeats of several hosts in one round trip."""
        if not infos:
            return
        at = self.clock()
        with self.r.pipeline(transaction=False) as pipe:
            for host, info in infos.items():
                pipe.set(self.keys.heartbeat(host), json.dumps({**info, "at": at}),
                         px=int(ttl_s * 1000))
            pipe.execute()

    def heartbeat(self, host: str) -> dict[str, Any] | None:
        raw = self.r.get(self.keys.heartbeat(host))
        return None if raw is None else dict(json.loads(raw))

    # -- VMs -----------------------------------------------------------------
    def put_vm(self, vm: VM) -> None:
        """Write ``vm`` whatever the record holds (with its ledger and change records)."""
        change = json.dumps({"record": vm.to_dict()}, separators=(",", ":"))
        self.r.eval(ledger.PUT_VM, 4, self.keys.vm(vm.name), self.keys.vms, self.keys.usage,
                    self.keys.changes, vm.name, dump(vm), change, CHANGES_MAXLEN)

    def add_vm(self, vm: VM) -> bool:
        """Write ``vm`` only if no record of that name exists (adoption); False if one
        does."""
        key = self.keys.vm(vm.name)
        with self.r.pipeline() as pipe:
            try:
                pipe.watch(key)
                if pipe.exists(key):
                    pipe.unwatch()
                    return False
                pipe.multi()
                pipe.set(key, dump(vm))
                pipe.sadd(self.keys.vms, vm.name)
                ledger.delta(pipe, self.keys.usage, None, vm)
                changed(pipe, self.keys, "vm", record=vm.to_dict())
                pipe.execute()
            except redis.WatchError:
                return False
        return True

    def forget_vm(self, name: str, version: int) -> bool:
        """Delete VM record ``name`` only if it is still at ``version`` (nobody wrote it
        since the caller decided)."""
        key = self.keys.vm(name)
        with self.r.pipeline() as pipe:
            try:
                pipe.watch(key)
                current = load(VM, pipe.get(key))
                if current is None or current.version != version:
                    pipe.unwatch()
                    return False
                pipe.multi()
                pipe.delete(key)
                pipe.srem(self.keys.vms, name)
                ledger.delta(pipe, self.keys.usage, current, None)
                changed(pipe, self.keys, "vm_gone", name=name)
                pipe.execute()
            except redis.WatchError:
                return False
        return True

    def delete_vm(self, name: str) -> None:
        """Forget a VM record (the caller destroyed the domain)."""
        change = json.dumps({"name": name}, separators=(",", ":"))
        self.r.eval(ledger.DELETE_VM, 4, self.keys.vm(name), self.keys.vms, self.keys.usage,
                    self.keys.changes, name, change, CHANGES_MAXLEN)

    def find_vm(self, name: str) -> VM | None:
        return load(VM, self.r.get(self.keys.vm(name)))

    def find_vms(self, names: list[str]) -> dict[str, VM]:
        """The records of those of ``names`` that exist, read in one round trip."""
        raws = self.r.mget([self.keys.vm(n) for n in names]) if names else []
        return {v.name: v for v in (load(VM, raw) for raw in raws) if v is not None}

    def get_vm(self, name: str) -> VM:
        vm = self.find_vm(name)
        if vm is None:
            raise NotFound(f"unknown VM {name!r}")
        return vm

    def list_vms(self) -> list[VM]:
        return list(self.find_vms(sorted(self.r.smembers(self.keys.vms))).values())

    def update_vm(self, name: str, **changes: Any) -> VM:
        def mutate(vm: VM) -> VM:
            for key, value in changes.items():
                setattr(vm, key, value)
            return vm

        updated = self.cas_vm(name, mutate)
        if updated is None:
            raise NotFound(f"unknown VM {name!r}")
        return updated

    def cas_vm(self, name: str, mutate: Callable[[VM], VM | None]) -> VM | None:
        """Compare-and-set a VM record (None: absent, or ``mutate`` declined); every
        write raises the record's ``version``."""
        return cas_vm(self.r, self.keys, name, mutate)

    def place_vm(self, name: str, host: str, state: str, *, on: str,
                 states: Collection[str] = ()) -> VM | None:
        """Record ``name`` on ``host`` as ``state`` only if it is still recorded on ``on``
        (and, if given, in one of ``states``); None if the record says otherwise."""
        def mutate(vm: VM) -> VM | None:
            if vm.host != on or (states and vm.state not in states):
                return None
            if vm.host == host and vm.state == state:
                return None
            vm.host, vm.state = host, state
            return vm

        placed = self.cas_vm(name, mutate)
        if placed is not None:
            return placed
        current = self.find_vm(name)
        ok = current is not None and current.host == host and current.state == state
        return current if ok else None

    # -- jobs and moves --------------------------------------------------------
    def get_job(self, job_id: str) -> Job:
        job = self.find_job(job_id)
        if job is None:
            raise NotFound(f"unknown job {job_id!r}")
        return job

    def list_jobs(self, limit: int = 100) -> list[Job]:
        ids = self.r.zrevrange(self.keys.jobs, 0, limit - 1)
        raws = self.r.mget([self.keys.job(i) for i in ids]) if ids else []
        return [j for j in (load(Job, raw) for raw in raws) if j is not None]

    def find_jobs(self, since: float = 0.0, states: Collection[str] = (), limit: int = 100,
                  batch: int = 500) -> tuple[list[Job], int]:
        """Jobs created at or after ``since`` in one of ``states`` (all if empty), newest
        first: the first ``limit`` of them, and how many more match."""
        found: list[Job] = []
        more, start = 0, 0
        while True:
            ids = self.r.zrevrangebyscore(self.keys.jobs, "+inf", since, start=start,
                                          num=batch)
            if not ids:
                return found, more
            raws = self.r.mget([self.keys.job(i) for i in ids])
            for job in (j for j in (load(Job, raw) for raw in raws) if j is not None):
                if states and job.state not in states:
                    continue
                if len(found) < limit:
                    found.append(job)
                else:
                    more += 1
            start += batch

    def update_job(self, job_id: str, mutate: Callable[[Job], Job | None]) -> Job | None:
        return cas(self.r, self.keys.job(job_id), Job, mutate)

    def set_drain_job(self, host: str, job_id: str) -> None:
        self.r.set(self.keys.drain(host), job_id)

    def drain_job(self, host: str) -> Job | None:
        """The latest drain job of ``host``."""
        job_id = self.r.get(self.keys.drain(host))
        return self.find_job(job_id) if job_id else None

    def get_move(self, move_id: str) -> Move:
        move = self.find_move(move_id)
        if move is None:
            raise NotFound(f"unknown move {move_id!r}")
        return move

    def job_moves(self, job: Job) -> list[Move]:
        raws = self.r.mget([self.keys.move(i) for i in job.moves]) if job.moves else []
        return [m for m in (load(Move, raw) for raw in raws) if m is not None]

    def claim_move(self, move_id: str, runner: str, lease_s: float, task_id: str = "",
                   ) -> Move | None:
        """Claim a pending move for ``runner``; None if anyone else has or had it."""
        token = uuid.uuid4().hex

        def mutate(move: Move) -> Move | None:
            if move.state != MoveState.PENDING.value or not move.destination:
                return None
            move.state, move.token, move.runner = MoveState.CLAIMED.value, token, runner
            move.task_id = task_id or move.task_id
            move.attempt += 1
            move.started_at = move.started_at or self.clock()
            move.lease_until = self.clock() + lease_s
            return move

        def extra(pipe: Any, move: Move) -> None:
            pipe.sadd(self.keys.active_moves, move.id)
            queue_index(pipe, self.keys, move)

        claimed = cas(self.r, self.keys.move(move_id), Move, mutate, extra=extra)
        if claimed is not None:
            self.emit(claimed.job_id, "move.claimed", move=move_id, vm=claimed.vm,
                      runner=runner, attempt=claimed.attempt)
        return claimed

    def advance_move(self, move_id: str, token: str, state: str | None = None,
                     lease_s: float = 0.0, **changes: Any) -> Move | None:
        """Change a move held with ``token``; None if the token no longer holds it."""

        def mutate(move: Move) -> Move | None:
            if move.token != token or move.terminal:
                return None
            if state is not None and state != move.state and not can_move(move.state, state):
                return None
            for key, value in changes.items():
                setattr(move, key, value)
            if lease_s:
                move.lease_until = self.clock() + lease_s
            if state is not None:
                self._enter(move, state)
            return move

        return self._write_move(move_id, mutate, state)

    def take_over(self, move_id: str, runner: str, lease_s: float, force: bool = False,
                  ) -> Move | None:
        """Take a move whose lease expired (its runner vanished) with a fresh token;
        ``force``: whatever its lease says (its runner's host is confirmed off)."""
        token = uuid.uuid4().hex

        def mutate(move: Move) -> Move | None:
            if MoveState(move.state) not in ACTIVE_MOVE_STATES:
                return None
            if move.lease_until > self.clock() and not force:
                return None
            move.token, move.runner = token, runner
            move.lease_until = self.clock() + lease_s
            return move

        taken = cas(self.r, self.keys.move(move_id), Move, mutate)
        if taken is not None:
            self.emit(taken.job_id, "move.taken_over", move=move_id, vm=taken.vm, runner=runner)
        return taken

    def set_move(self, move_id: str, state: str, expect: str = MoveState.PENDING.value,
                 **changes: Any) -> Move | None:
        """Controller-side change of an unclaimed move (placement, cancel, re-plan,
        failover): written only if the move is still in ``expect`` and no runner holds
        it, so a decision taken on a stale read changes nothing."""

        def mutate(move: Move) -> Move | None:
            if move.state != expect or move.token:
                return None
            if move.state != state and not can_move(move.state, state):
                return None
            for key, value in changes.items():
                setattr(move, key, value)
            self._enter(move, state)
            return move

        return self._write_move(move_id, mutate, state)

    def _enter(self, move: Move, state: str) -> None:
        move.state = state
        if move.terminal:
            move.finished_at = self.clock()
            move.token = ""
        elif state == MoveState.PENDING.value:
            move.token, move.runner = "", ""

    def _write_move(self, move_id: str, mutate: Callable[[Move], Move | None],
                    state: str | None) -> Move | None:
        before: list[str] = []  # the state the write changed (read in the same transaction)

        def change(move: Move) -> Move | None:
            before[:] = [move.state]
            return mutate(move)

        def extra(pipe: Any, move: Move) -> None:
            if MoveState(move.state) not in ACTIVE_MOVE_STATES:
                pipe.srem(self.keys.active_moves, move.id)
            queue_index(pipe, self.keys, move)

        updated = cas(self.r, self.keys.move(move_id), Move, change, extra=extra)
        if updated is not None and state is not None and before and before[0] != updated.state:
            self.emit(updated.job_id, f"move.{updated.state}", move=move_id, vm=updated.vm,
                      source=updated.source, destination=updated.destination,
                      error=updated.error)
        return updated

    def active_moves(self) -> list[Move]:
        ids = sorted(self.r.smembers(self.keys.active_moves))
        raws = self.r.mget([self.keys.move(i) for i in ids]) if ids else []
        return [m for m in (load(Move, raw) for raw in raws) if m is not None]

    def lock(self, name: str, timeout_s: float) -> Lock:
        """A short mutual-exclusion lock (expires by itself if its holder dies)."""
        return Lock(self.r, self.keys.lease(name), timeout=timeout_s, blocking_timeout=timeout_s)

    # -- events and counters ------------------------------------------------------
    def emit(self, job_id: str, kind: str, /, **fields: Any) -> None:
        """Record an event of a job (and, unless it is a progress sample, in the audit)."""
        self.journal.emit(job_id, kind, **fields)

    def events(self, job_id: str, after: str = "-", block_ms: int | None = None,
               ) -> list[tuple[str, dict[str, Any]]]:
        return self.journal.job_events(job_id, after, block_ms)

    def purge(self) -> int:
        """Delete every key under this store's prefix (tests and the demo only)."""
        count = 0
        for key in self.r.scan_iter(match=self.keys.pattern, count=500):
            count += int(self.r.delete(key))
        return count

