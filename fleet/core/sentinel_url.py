"""The ``sentinel://`` form of ``FLEET_REDIS_URL``: the sentinels and the master group.

``sentinel://[[user]:password@]host:port[,host:port...][/db]?master=NAME`` names the
sentinels (comma-separated) and the master group Sentinel watches; the password is the
master's (sentinels themselves without auth). Pure parsing; ``fleet.store.connection``
connects with it and ``tasks.app`` turns it into Celery's own form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SENTINEL = "sentinel://"


@dataclass(frozen=True)
class SentinelURL:
    """A parsed ``sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None

    def celery(self) -> tuple[str, dict[str, Any]]:
        """The broker/backend URL in Celery's form (one ``sentinel://`` per sentinel,
        ``;``-separated) and the transport options it needs."""
        auth = ""
        if self.password is not None:
            auth = f"{self.username or ''}:{self.password}@"
        url = ";".join(f"sentinel://{auth}{h}:{p}/{self.db}" for h, p in self.sentinels)
        return url, {"master_name": self.master}


def parse_sentinel(url: str) -> SentinelURL:
    """Parse a ``sentinel://`` URL; ``ValueError`` saying what is wrong."""
    parts = urlsplit(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    sentinels = tuple(_host_port(item) for item in hosts.split(",") if item)
    if not sentinels:
        raise ValueError("a sentinel:// URL names at least one sentinel host:port")
    master = parse_qs(parts.query).get("master", [""])[0]
    if not master:
        raise ValueError("a sentinel:// URL needs ?master=NAME (the Sentinel master group)")
    db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise ValueError(f"database {db!r} is not a number")
    user, colon, password = auth.partition(":")
    return SentinelURL(sentinels, master, int(db), unquote(user) or None,
                       unquote(password) if colon else None)


def _host_port(item: str) -> tuple[str, int]:
    host, _, port = item.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"sentinel {item!r} is not host:port")
    return host, int(port)
