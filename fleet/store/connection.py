"""Redis connections from ``FLEET_REDIS_URL``: a plain server or a Sentinel-watched master.

``redis://``, ``rediss://`` and ``unix://`` name one server. High availability uses Redis
Sentinel: ``sentinel://[[user]:password@]host:port[,host:port...][/db]?master=NAME``
names the sentinels (comma-separated) and the master group; the password is the
master's (sentinels themselves without auth). The store, Celery's broker and its result
backend all follow the master Sentinel names, so a promotion moves every part of fleet
to the new master.
"""

from __future__ import annotations

import math
from typing import Any

import redis
from redis.backoff import EqualJitterBackoff, NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from fleet.core.sentinel_url import SENTINEL, parse_sentinel

MAX_CONNECTIONS = 64
POOL_WAIT_S = 10.0
SOCKET_TIMEOUT_S = 30.0  # above any blocking read fleet makes (at most a few seconds)
CONNECT_TIMEOUT_S = 5.0


def retry_for(ride_out_s: float) -> Retry:
    """A retry policy that keeps trying a command whose connection failed for at least
    ``ride_out_s`` (0: one more try): long enough to ride out a Redis restart or a
    Sentinel promotion, each wait between half and all of 50 ms doubling up to 1 s. A
    transaction that was WATCHing keys is not retried: it fails with ``WatchError``,
    and fleet's compare-and-set loops read again and retry it themselves."""
    if ride_out_s <= 0:
        return Retry(NoBackoff(), 1)
    first, steps = 0.775, 5  # the least the first five waits add up to: 50 ms ... 800 ms
    return Retry(EqualJitterBackoff(cap=1.0, base=0.05),
                 steps + max(0, math.ceil((ride_out_s - first) / 0.5)))


def client(url: str, max_connections: int = MAX_CONNECTIONS,
           connect_timeout_s: float = CONNECT_TIMEOUT_S,
           socket_timeout_s: float = SOCKET_TIMEOUT_S, ride_out_s: float = 0.0,
           ) -> redis.Redis:
    """A client on its own bounded pool (a thread waits up to ``POOL_WAIT_S`` for a
    free connection) that never awaits a reply forever, and retries a command whose
    connection failed for ``ride_out_s`` (``retry_for``); replies decoded to str."""
    timeouts: dict[str, Any] = {"socket_timeout": socket_timeout_s,
                                "socket_connect_timeout": connect_timeout_s,
                                "retry": retry_for(ride_out_s)}
    if url.startswith(SENTINEL):
        found = parse_sentinel(url)
        watch = Sentinel(list(found.sentinels), sentinel_kwargs={
            "socket_timeout": connect_timeout_s, "socket_connect_timeout": connect_timeout_s},
            **timeouts)
        master: redis.Redis = watch.master_for(
            found.master, decode_responses=True, db=found.db, username=found.username,
            password=found.password, health_check_interval=30,
            max_connections=max_connections)
        return master
    pool = redis.BlockingConnectionPool.from_url(
        url, decode_responses=True, health_check_interval=30, max_connections=max_connections,
        timeout=POOL_WAIT_S, **timeouts)
    return redis.Redis(connection_pool=pool)


def answers(url: str, timeout_s: float = 1.0) -> bool:
    """Whether the Redis server ``url`` names (for Sentinel: its master) answers."""
    try:
        return bool(client(url, 2, timeout_s, timeout_s, 0.0).ping())
    except (redis.RedisError, ValueError):
        return False


def server_id(r: redis.Redis) -> str:
    """The run id of the server ``r`` talks to now: it changes when another server takes
    over (a Sentinel promotion) or the server restarts."""
    info: Any = r.info("server")
    return str(info.get("run_id", ""))
