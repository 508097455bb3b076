"""Where a moving VM is, judged from what its source and destination hosts report.

A migration ends in steps: the destination resumes the guest, then the source shuts
its copy off, then undefines it. Whoever looks in between sees a picture that is
neither "moved" nor "stayed"; ``judge`` calls it unsettled, so the caller looks again
instead of deciding on a moment.
"""

from __future__ import annotations

from enum import StrEnum

from fleet.core.hypervisor import STOPPED_DOMAIN, DomainState


class Where(StrEnum):
    """The verdict on a VM's location after a move."""

    MOVED = "moved"  # the destination holds the VM as it should be
    STAYED = "stayed"  # the source still does; the destination may hold a leftover
    UNSETTLED = "unsettled"  # in between, or both run: look again


def judge(here: DomainState | None, there: DomainState | None, stopped: bool) -> Where:
    """Judge ``here`` (the source's domain state, None if absent) and ``there`` (the
    destination's) for a VM that should be running, or stopped if ``stopped``."""
    if stopped:
        return _judge_stopped(here, there)
    if there is DomainState.RUNNING and (here is None or here in STOPPED_DOMAIN):
        return Where.MOVED  # a source shut off after the switch-over is on its way out
    if here is DomainState.RUNNING and there is not DomainState.RUNNING:
        return Where.STAYED
    return Where.UNSETTLED


def _judge_stopped(here: DomainState | None, there: DomainState | None) -> Where:
    """A stopped VM moves by its definition: only one host should hold it, shut off."""
    if here is None and there in STOPPED_DOMAIN:
        return Where.MOVED
    if here in STOPPED_DOMAIN and (there is None or there in STOPPED_DOMAIN):
        return Where.STAYED  # a definition copied but not yet removed here is a leftover
    return Where.UNSETTLED
