"""The monitor leadership lease as pure values and decisions.

Redis keeps the lease: one key whose value names the holder and the epoch of its term,
written with a TTL by one atomic script (claim if absent, else renew if it still names
the caller). Redis expires it; no monitor compares clocks to judge it. Each new term
takes a rising epoch from a separate counter, and every write a monitor makes is
conditional on the lease key still holding its ``Term`` — so a leader that stalled
and lost the lease writes nothing (it gets ``LostLease``).

``Lease`` and ``claim_lease`` model the same rules with an explicit clock standing in
for Redis's expiry: the deterministic failover simulation uses them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fleet.core.errors import Conflict, InvalidInput

SEPARATOR = " "
"""Between the epoch and the holder in the lease key's value (the epoch has none)."""


class LostLease(Conflict):
    """The lease no longer names the term this monitor acts under: stop the round."""


@dataclass(frozen=True)
class Term:
    """One leadership term: ``holder`` leads under ``epoch`` until the lease lapses."""

    holder: str
    epoch: int

    def encode(self) -> str:
        """The lease key's value for this term (the claim script builds the same)."""
        return f"{self.epoch}{SEPARATOR}{self.holder}"

    @classmethod
    def decode(cls, raw: str | None) -> Term | None:
        """The term a lease value names; None for no lease or a malformed value."""
        if not raw:
            return None
        epoch, sep, holder = raw.partition(SEPARATOR)
        if not sep or not holder or not epoch.isdigit():
            return None
        return cls(holder, int(epoch))


def new_term(known_epoch: int, term: Term) -> bool:
    """Whether ``term`` starts a term this monitor has not acted under yet (a takeover:
    the kept state may hold another leader's half-done round)."""
    return term.epoch != known_epoch


def ttl_ms(ttl_s: float) -> int:
    """The lease's TTL for Redis, in whole milliseconds (at least one)."""
    if ttl_s <= 0:
        raise InvalidInput("the monitor lease TTL must be positive")
    return max(1, round(ttl_s * 1000))


@dataclass(frozen=True)
class Lease:
    """The simulated lease: ``holder`` may act until ``until`` on the simulation's clock.

    ``epoch`` grows on every change of holder, as the store's epoch counter does.
    """

    holder: str
    until: float
    epoch: int = 0


def claim_lease(current: Lease | None, me: str, now: float, ttl_s: float) -> Lease | None:
    """The simulated claim script: a lapsed lease is taken with the next epoch (by its
    former holder too), a live one renewed for its holder, else None (stand by)."""
    if current is None:
        return Lease(me, now + ttl_s, 1)
    if current.until <= now:
        return Lease(me, now + ttl_s, current.epoch + 1)
    if current.holder == me:
        return replace(current, until=now + ttl_s)
    return None


def may_act(lease: Lease | None, me: str, now: float, margin_s: float = 0.0) -> bool:
    """Whether ``me`` holds a live simulated lease with at least ``margin_s`` left."""
    return lease is not None and lease.holder == me and now + margin_s < lease.until
