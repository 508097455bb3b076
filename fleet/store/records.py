"""Atomic read-modify-write of JSON records in Redis (WATCH/MULTI compare-and-set)."""

from __future__ import annotations

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
    returns None). ``extra(pipe, new)`` may queue more commands in the same transaction.
    A concurrent writer makes the transaction retry against the fresh value.
    With ``guard`` (key, expected value) the write also needs that key to hold that
    value until it commits; ``GuardFailed`` is raised, and nothing written, if it does not.
    """
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
