"""Compare-and-set of records under real concurrency: processes against a real
redis-server (in-process fake Redis would serialise the writers and prove nothing).

Every write lands exactly once with its extra commands, a write made between a reader's
read and its commit sends the reader round again, and a guard that changes in that
window stops the write whole.
"""

from __future__ import annotations

import json
import multiprocessing
import uuid
from dataclasses import dataclass
from typing import Any, Self

import pytest
import redis

from fleet.store.records import GuardFailed, cas, dump

WRITERS, WRITES = 4, 150


@dataclass
class Counter:
    n: int
    by: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "by": self.by}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return cls(int(data["n"]), str(data["by"]))


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def _bump(log: str, who: str) -> Any:
    def mutate(c: Counter) -> Counter:
        return Counter(c.n + 1, who)

    def extra(pipe: Any, new: Counter) -> None:
        pipe.rpush(log, new.n)
        pipe.hincrby(log + ":by", who, 1)

    return mutate, extra


def _writer(url: str, key: str, log: str, who: str) -> None:
    client = _client(url)
    mutate, extra = _bump(log, who)
    for _ in range(WRITES):
        assert cas(client, key, Counter, mutate, extra=extra, retries=10_000) is not None


@pytest.fixture
def key(redis_url: str) -> Any:
    client = _client(redis_url)
    name = f"cas-{uuid.uuid4().hex[:8]}"
    client.set(name, dump(Counter(0)))
    yield client, name
    client.delete(name, name + ":log", name + ":log:by", name + ":guard")


def test_writers_in_many_processes_lose_no_write_and_run_each_extra_once(
        redis_url: str, key: tuple[redis.Redis, str]) -> None:
    client, name = key
    procs = [multiprocessing.Process(target=_writer, args=(redis_url, name, name + ":log",
                                                           f"w{i}")) for i in range(WRITERS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    total = WRITERS * WRITES
    assert Counter.from_dict(json.loads(client.get(name))).n == total
    # each committed value appears once in the log, in order: no write lost or doubled
    assert [int(v) for v in client.lrange(name + ":log", 0, -1)] == list(range(1, total + 1))
    assert client.hgetall(name + ":log:by") == {f"w{i}": str(WRITES) for i in range(WRITERS)}


def test_a_write_between_read_and_commit_sends_the_writer_round_again(
        redis_url: str, key: tuple[redis.Redis, str]) -> None:
    client, name = key
    other = _client(redis_url)
    seen: list[int] = []

    def mutate(c: Counter) -> Counter:
        seen.append(c.n)
        if len(seen) == 1:  # another process writes after this read
            other.set(name, dump(Counter(c.n + 10, "other")))
        return Counter(c.n + 1, "me")

    done = cas(client, name, Counter, mutate, extra=lambda pipe, new: pipe.rpush(
        name + ":log", new.n))
    assert seen == [0, 10] and done == Counter(11, "me")
    assert client.lrange(name + ":log", 0, -1) == ["11"]  # the lost attempt ran nothing


def test_a_guard_that_changes_before_the_commit_stops_the_whole_write(
        redis_url: str, key: tuple[redis.Redis, str]) -> None:
    client, name = key
    guard = name + ":guard"
    client.set(guard, "term-1")

    def mutate(c: Counter) -> Counter:
        client.set(guard, "term-2")  # a new leader between this writer's read and commit
        return Counter(c.n + 1)

    with pytest.raises(GuardFailed):
        cas(client, name, Counter, mutate, guard=(guard, "term-1"),
            extra=lambda pipe, new: pipe.rpush(name + ":log", new.n))
    assert client.get(name) == dump(Counter(0)) and not client.exists(name + ":log")
    with pytest.raises(GuardFailed):  # and a stale guard fails before anything is read
        cas(client, name, Counter, lambda c: Counter(c.n + 1), guard=(guard, "term-1"))


def test_an_extra_script_takes_the_watched_path_and_still_lands(
        key: tuple[redis.Redis, str]) -> None:
    client, name = key

    def extra(pipe: Any, new: Counter) -> None:
        pipe.eval("return redis.call('RPUSH', KEYS[1], ARGV[1])", 1, name + ":log", new.n)

    assert cas(client, name, Counter, lambda c: Counter(c.n + 1), extra=extra) == Counter(1)
    assert client.lrange(name + ":log", 0, -1) == ["1"]
