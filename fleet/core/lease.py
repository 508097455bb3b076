"""The monitor leadership lease as pure functions: who may act, and when to take over.

The store keeps one lease record and writes it with a compare-and-set against the
record it read (a Redis ``SET ... NX PX`` / ``WATCH`` transaction); these functions say
what to write. A monitor acts only while it holds a live lease, so two monitors never
act at once; a standby takes over once the leader's lease lapsed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Lease:
    """The monitor leadership lease: ``holder`` may act until ``until``.

    ``epoch`` grows on every change of holder; the store writes a lease with a
    compare-and-set against the one read, so two monitors never both hold it.
    """

    holder: str
    until: float
    epoch: int = 0


def claim_lease(current: Lease | None, me: str, now: float, ttl_s: float) -> Lease | None:
    """The lease ``me`` should write now (renewal or takeover), or None to stand by."""
    if current is None:
        return Lease(me, now + ttl_s, 1)
    if current.holder == me:
        return replace(current, until=now + ttl_s)
    if current.until <= now:
        return Lease(me, now + ttl_s, current.epoch + 1)
    return None


def may_act(lease: Lease | None, me: str, now: float, margin_s: float = 0.0) -> bool:
    """Whether ``me`` holds a live lease with at least ``margin_s`` left."""
    return lease is not None and lease.holder == me and now + margin_s < lease.until
