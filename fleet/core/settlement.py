"""Where a moving VM is, and what to do about it: the one decision on a move's outcome.

``settle(source, destination, sighting)`` takes what the two hosts report and returns
a ``Settlement``: the verdict, the host the VM record must name, and the steps that
make the picture safe (pause a second running copy, remove a leftover, resume a copy
that must run). The runner after its hypervisor call returned *or raised*, the
reconciler after an orphaned job ended, and failover's adoption all decide here; no
decision about where a VM is is ever taken from an exception.

What libvirt does, and so what the table below assumes:

* A migration ends in steps: the destination resumes the guest, then the source shuts
  its copy off and undefines it. In between, the source is ``paused`` while the
  destination runs: look again.
* If the destination fails in the finish phase, libvirt resumes the source copy too
  (its state reason says the migration was cancelled): two running copies. The
  destination's copy wins — it is the switch-over's target, it has run since the
  switch-over and announced the guest on the network, while the source's copy was
  resumed afterwards by libvirt's error path. The source copy is paused at once and
  destroyed once the destination's copy is confirmed running.
* A source copy resumed after a cancelled switch-over while the destination cannot be
  asked may be one of two copies: it is paused until the destination answers.
* The source's copy is undefined only after the destination confirmed the migration,
  so a source that no longer holds the VM means it moved, even if the destination
  cannot be asked right now.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fleet.core.hypervisor import STOPPED_DOMAIN, DomainState

R, P = DomainState.RUNNING, DomainState.PAUSED


class Verdict(StrEnum):
    """Where the VM is after a move, as far as the two hosts say."""

    MOVED = "moved"  # the destination holds it as it should be
    STAYED = "stayed"  # the source does
    LOST = "lost"  # neither holds it: it runs nowhere
    UNSETTLED = "unsettled"  # in between, or a copy must be paused first: look again


class Seen(StrEnum):
    """A copy's state beyond ``DomainState``: absent, or the host could not be asked."""

    ABSENT = "absent"
    UNKNOWN = "unknown"
    OFF = "off"  # the host is confirmed powered off (fenced): nothing of it runs


Copy = DomainState | Seen


@dataclass(frozen=True)
class Sighting:
    """What both hosts report about one VM.

    ``stopped``: the VM is meant to be shut off (a move by definition).
    ``cancelled``: the source copy runs again after libvirt cancelled a switch-over.
    ``paused_here``: fleet paused a copy while settling this move (the source's, or for
    a stopped VM the destination's).
    ``final``: the caller will not look again (its settle time is over).
    """

    source: Copy
    destination: Copy
    stopped: bool = False
    cancelled: bool = False
    paused_here: bool = False
    final: bool = False


@dataclass(frozen=True)
class Settlement:
    """The verdict, the host the record must name ("" when none), and steps to take."""

    verdict: Verdict
    host: str = ""
    pause: str = ""  # pause this host's copy now (it may be a second running copy)
    remove: str = ""  # destroy and undefine this host's copy (a leftover)
    resume: str = ""  # resume this host's paused copy (the one that must run)
    reason: str = ""

    @property
    def decided(self) -> bool:
        return self.verdict is not Verdict.UNSETTLED


def settle(source: str, destination: str, seen: Sighting) -> Settlement:
    """The outcome of moving a VM from ``source`` to ``destination`` given ``seen``."""
    if seen.stopped:
        return _settle_stopped(source, destination, seen)
    there, here = seen.destination, seen.source
    if here is Seen.OFF:
        return _source_off(destination, seen)
    if there is R:
        return _destination_runs(source, destination, seen)
    if here is R:
        return _source_runs(source, destination, seen)
    if here is Seen.ABSENT and there is Seen.UNKNOWN:
        return Settlement(Verdict.MOVED, destination,
                          reason="the source let go of it; the destination cannot be asked")
    return _neither_runs(source, destination, seen)


def _source_off(destination: str, seen: Sighting) -> Settlement:
    if seen.destination is R:
        return Settlement(Verdict.MOVED, destination,
                          reason="runs on the destination; the source is off")
    return Settlement(Verdict.LOST,
                      reason="the source is off and the destination does not report it running")


def _destination_runs(source: str, destination: str, seen: Sighting) -> Settlement:
    here = seen.source
    if here is R:
        return Settlement(Verdict.UNSETTLED, pause=source,
                          reason="two running copies: the source's is paused")
    if here is P and not (seen.final or seen.paused_here):
        return Settlement(Verdict.UNSETTLED, reason="switch-over under way")
    leftover = source if here is not Seen.ABSENT else ""
    return Settlement(Verdict.MOVED, destination, remove=leftover,
                      reason="runs on the destination")


def _source_runs(source: str, destination: str, seen: Sighting) -> Settlement:
    there = seen.destination
    if there is Seen.UNKNOWN and seen.cancelled:
        return Settlement(Verdict.UNSETTLED, pause=source,
                          reason="the source resumed after a cancelled switch-over and the"
                                 " destination cannot be asked: paused until it can")
    leftover = destination if there not in (Seen.ABSENT, Seen.UNKNOWN) else ""
    return Settlement(Verdict.STAYED, source, remove=leftover, reason="runs on the source")


def _neither_runs(source: str, destination: str, seen: Sighting) -> Settlement:
    here, there = seen.source, seen.destination
    if not seen.final:
        return Settlement(Verdict.UNSETTLED, reason="neither copy runs yet")
    if there is Seen.UNKNOWN:
        return Settlement(Verdict.UNSETTLED, reason="the destination cannot be asked")
    if here is P:
        leftover = destination if there is not Seen.ABSENT else ""
        return Settlement(Verdict.STAYED, source, resume=source, remove=leftover,
                          reason="the source's paused copy is the only one: resumed")
    if there is P:  # an incoming copy whose source let go: its state may be incomplete
        return Settlement(Verdict.UNSETTLED, reason="only a paused incoming copy is left")
    return Settlement(Verdict.LOST, reason="runs on neither host")


def _settle_stopped(source: str, destination: str, seen: Sighting) -> Settlement:
    """A stopped VM moves by its definition: only one host should hold it, shut off."""
    here, there = seen.source, seen.destination
    if here is Seen.ABSENT and there in STOPPED_DOMAIN:
        return Settlement(Verdict.MOVED, destination, reason="defined on the destination")
    if here in STOPPED_DOMAIN and there not in (R, P, Seen.UNKNOWN):
        leftover = destination if there is not Seen.ABSENT else ""
        return Settlement(Verdict.STAYED, source, remove=leftover,
                          reason="still defined on the source")
    if R in (here, there):
        return _stopped_but_running(source, destination, seen)
    if not seen.final or Seen.UNKNOWN in (here, there):
        return Settlement(Verdict.UNSETTLED, reason="not a cold move's outcome yet")
    return Settlement(Verdict.LOST, reason="defined on neither host")


def _stopped_but_running(source: str, destination: str, seen: Sighting) -> Settlement:
    """Someone started a VM that moved stopped: the record follows where it runs."""
    here, there = seen.source, seen.destination
    if here is R and there is R:  # the record still names the source
        return Settlement(Verdict.UNSETTLED, pause=destination,
                          reason="two running copies of a stopped VM: the destination's"
                                 " is paused")
    if here is R and there is P and seen.paused_here:
        return Settlement(Verdict.STAYED, source, remove=destination,
                          reason="started on the source meanwhile")
    if not seen.final or Seen.UNKNOWN in (here, there):
        return Settlement(Verdict.UNSETTLED, reason="not a cold move's outcome yet")
    if here is R:
        return Settlement(Verdict.STAYED, source, reason="started on the source meanwhile")
    return Settlement(Verdict.MOVED, destination, reason="started on the destination meanwhile")
