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
) -> R | None:
    """Apply ``mutate`` to the record at ``key`` atomically.

    ``mutate`` returns the new record, or None to leave it unchanged (the call then
    returns None). ``extra(pipe, new)`` may queue more commands in the same transaction.
    A concurrent writer makes the transaction retry against the fresh value.
    """
    for _ in range(retries):
        with client.pipeline() as transaction:
            pipe: Any = transaction
            try:
                pipe.watch(key)
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
