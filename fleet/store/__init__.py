"""The Redis-backed state store: the source of truth for hosts, VMs, jobs and moves."""

from fleet.store.keys import Keys
from fleet.store.state import Store, redis_answers

__all__ = ["Keys", "Store", "redis_answers"]
