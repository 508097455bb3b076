"""Atomic read-modify-write of JSON records in Redis (compare-and-set).

``cas`` reads a record (and its guard) in one round trip, computes the new record, and
commits it with one script that writes only if the record (and guard) still hold what
was read, running the caller's extra commands in the same atomic step: two round trips
a write. Extra commands that are scripts themselves (a script cannot call one) take the
WATCH/MULTI path, three round trips.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, Protocol, Self, TypeVar

import redis

from fleet.core.errors import Conflict


class _Record(Protocol):
    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self: ...


R = TypeVar("R", bound=_Record)


Guard = tuple[str, str]
"""A key and the value it must hold for a guarded write to commit."""


class GuardFailed(Conflict):
    """A guarded write found its guard key without the expected value."""


def watch(pipe: Any, key: str, guard: Guard | None) -> None:
    """WATCH ``key`` (and the guard key) on ``pipe``; raise ``GuardFailed`` (unwatched)
    if the guard key does not hold its expected value. The WATCH makes the transaction
    fail if the guard key changes before it commits."""
    if guard is None:
        pipe.watch(key)
        return
    pipe.watch(key, guard[0])
    if pipe.get(guard[0]) != guard[1]:
        pipe.unwatch()
        raise GuardFailed(f"{guard[0]} no longer holds {guard[1]!r}")


def dump(record: _Record) -> str:
    return json.dumps(record.to_dict(), separators=(",", ":"), sort_keys=True)


def load(cls: type[R], raw: str | None) -> R | None:
    return None if raw is None else cls.from_dict(json.loads(raw))


_COMMIT = """
if KEYS[2] and redis.call('GET', KEYS[2]) ~= ARGV[3] then return -1 end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
local i = 4
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
"""
_COMMIT_SHA = hashlib.sha1(_COMMIT.encode()).hexdigest()
_SCRIPTED = {"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"}
Extra = Callable[[Any, Any], None]


def queued(client: redis.Redis, extra: Extra | None, new: Any) -> list[tuple[Any, ...]] | None:
    """The commands ``extra(pipe, new)`` queues, as argument tuples (nothing is sent);
    None if one of them is a script."""
    if extra is None:
        return []
    pipe: Any = client.pipeline(transaction=False)
    try:
        extra(pipe, new)
        commands = [tuple(args) for args, _ in pipe.command_stack]
    finally:
        pipe.reset()
    if any(str(args[0]).upper() in _SCRIPTED for args in commands):
        return None
    return commands


def _commit(client: redis.Redis, key: str, raw: str, new: str, guard: Guard | None,
            commands: list[tuple[Any, ...]]) -> int:
    """Write ``new`` at ``key`` and run ``commands`` if ``key`` still holds ``raw`` (and
    the guard key its value): 1; 0 if the record changed; -1 if the guard did."""
    args: list[Any] = [raw, new, guard[1] if guard else ""]
    for command in commands:
        args += [len(command), *command]
    keys = [key, guard[0]] if guard else [key]
    try:
        return int(client.evalsha(_COMMIT_SHA, len(keys), *keys, *args))
    except redis.exceptions.NoScriptError:  # first use on this server: send the script
        return int(client.eval(_COMMIT, len(keys), *keys, *args))


def cas(
    client: redis.Redis,
    key: str,
    cls: type[R],
    mutate: Callable[[R], R | None],
    extra: Callable[[Any, R], None] | None = None,
    retries: int = 50,
    guard: Guard | None = None,
) -> R | None:
    """Apply ``mutate`` to the record at ``key`` atomically.

    ``mutate`` returns the new record, or None to leave it unchanged (the call then
    returns None). ``extra(pipe, new)`` may queue more commands in the same atomic write.
    A concurrent writer makes the write retry against the fresh value.
    With ``guard`` (key, expected value) the write also needs that key to hold that
    value until it commits; ``GuardFailed`` is raised, and nothing written, if it does not.
    """
    for _ in range(retries):
        raw: Any
        raw, held = client.mget(key, guard[0]) if guard else (client.get(key), None)
        if guard is not None and held != guard[1]:
            raise GuardFailed(f"{guard[0]} no longer holds {guard[1]!r}")
        current = load(cls, raw)
        if current is None:
            return None
        new = mutate(current)
        if new is None:
            return None
        commands = queued(client, extra, new)
        if commands is None:
            return _watched(client, key, cls, mutate, extra, retries, guard)
        done = _commit(client, key, str(raw), dump(new), guard, commands)
        if done == 1:
            return new
        if done == -1:
            raise GuardFailed(f"{guard[0] if guard else key} changed before the write")
    raise Conflict(f"too much contention on {key}")


def _watched(client: redis.Redis, key: str, cls: type[R], mutate: Callable[[R], R | None],
             extra: Callable[[Any, R], None] | None, retries: int, guard: Guard | None,
             ) -> R | None:
    """``cas`` by WATCH/MULTI: for extra commands that are scripts."""
    for _ in range(retries):
        with client.pipeline() as transaction:
            pipe: Any = transaction
            try:
                watch(pipe, key, guard)
                raw: Any = pipe.get(key)
                current = load(cls, raw)
                if current is None:
                    pipe.unwatch()
                    return None
                new = mutate(current)
                if new is None:
                    pipe.unwatch()
                    return None
                pipe.multi()
                pipe.set(key, dump(new))
                if extra is not None:
                    extra(pipe, new)
                pipe.execute()
                return new
            except redis.WatchError:
                continue
    raise Conflict(f"too much contention on {key}")
