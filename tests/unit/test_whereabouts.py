"""Judging where a moved VM is from what its two hosts report."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.core.hypervisor import STOPPED_DOMAIN, DomainState
from fleet.core.whereabouts import Where, judge

R, P, S, C = DomainState.RUNNING, DomainState.PAUSED, DomainState.SHUTOFF, DomainState.CRASHED


@pytest.mark.parametrize(("here", "there", "where"), [
    (None, R, Where.MOVED),
    (S, R, Where.MOVED),  # source shut off after the switch-over, not yet undefined
    (P, R, Where.UNSETTLED),  # destination resumed, source not yet shut off
    (R, None, Where.STAYED),
    (R, P, Where.STAYED),  # an incoming domain left behind
    (R, R, Where.UNSETTLED),  # two copies: never decided on a glance
    (None, None, Where.UNSETTLED),
    (None, P, Where.UNSETTLED),
    (P, P, Where.UNSETTLED),
])
def test_a_running_vm(here: DomainState | None, there: DomainState | None,
                      where: Where) -> None:
    assert judge(here, there, stopped=False) is where


@pytest.mark.parametrize(("here", "there", "where"), [
    (None, S, Where.MOVED),
    (S, None, Where.STAYED),
    (S, S, Where.STAYED),  # defined on the destination, not yet undefined here
    (None, R, Where.UNSETTLED),  # someone started it: not a cold move's outcome
    (R, None, Where.UNSETTLED),
    (None, None, Where.UNSETTLED),
])
def test_a_stopped_vm(here: DomainState | None, there: DomainState | None,
                      where: Where) -> None:
    assert judge(here, there, stopped=True) is where


states = st.one_of(st.none(), st.sampled_from(list(DomainState)))


@given(states, states, st.booleans())
def test_a_verdict_names_a_host_that_holds_the_vm_as_it_should_be(
        here: DomainState | None, there: DomainState | None, stopped: bool) -> None:
    wanted = STOPPED_DOMAIN if stopped else {R}
    where = judge(here, there, stopped)
    if where is Where.MOVED:
        assert there in wanted and here is not R
    if where is Where.STAYED:
        assert here in wanted and there is not R
