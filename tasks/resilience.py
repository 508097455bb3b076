"""Keeping Celery workers alive through a broker restart (a workaround of kombu's Redis transport).

Upstream defect, seen with kombu 5.7.0 and celery 5.7.0 on the Redis broker: when the
broker goes away while a worker holds unacknowledged messages (``task_acks_late``), the
consumer's ``on_connection_error_after_connected`` calls ``Connection.collect()`` and
then ``Connection.close()``, and the default channel gets closed three times: by
``collect()``, by the transport's ``close_connection()`` inside it, and by ``close()``.
With the broker gone, each ``Channel.close()`` stops at its first Redis command -- reading
the pending BRPOP, then deleting the worker's auto-delete remote-control queue -- and the
connection error is ignored. Between the second and the third, ``collect()`` detaches the
transport (``transport.client = None``). The third attempt reaches
``QoS.restore_unacked_once()``, which needs a new Redis client: ``Channel._connparams``
reads ``self.connection.client.hostname`` and raises ``AttributeError``. That is no
connection error, so nothing ignores it and the worker stops with ``Unrecoverable error:
AttributeError("'NoneType' object has no attribute 'hostname'")`` right after ``Restoring
N unacknowledged message(s)``. A worker holding no message has nothing to restore and
reconnects. The task that was in flight meets the same ``AttributeError`` later when it
acknowledges its message on that channel. Earlier reports of ``_connparams`` failing on
a detached channel: celery/kombu issues 582 and 970.

The workaround makes a channel whose transport is detached raise the connection error
Redis itself would raise. Callers already handle that: ``close()`` finishes, the
consumer reconnects, a late acknowledgement is logged as failed. The messages that were
in flight stay in the broker's unacked index (kombu writes them there on delivery) and
come back after the visibility timeout; fleet's claims make that second delivery a
no-op, and its reconciler settles the move whose runner lost the broker.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

_MARK = "_fleet_detached_guard"


def _guarded(connparams: Any) -> Any:
    """``Channel._connparams`` raising a connection error once the transport is detached."""

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise RedisConnectionError("broker connection already closed")
        return connparams(self, asynchronous=asynchronous)

    setattr(_connparams, _MARK, True)
    _connparams.__doc__ = connparams.__doc__
    return _connparams


def install() -> None:
    """Patch kombu's Redis channel once (idempotent); a no-op if the internals changed."""
    channel = kombu_redis.Channel
    current = getattr(channel, "_connparams", None)
    if current is None or getattr(current, _MARK, False):
        return
    channel._connparams = _guarded(current)  # type: ignore[method-assign]
