"""The one decision on a move's outcome, from what its two hosts report."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.core.hypervisor import STOPPED_DOMAIN, DomainState
from fleet.core.settlement import Copy, Seen, Settlement, Sighting, Verdict, settle

R, P, S, C = DomainState.RUNNING, DomainState.PAUSED, DomainState.SHUTOFF, DomainState.CRASHED
A, U, OFF = Seen.ABSENT, Seen.UNKNOWN, Seen.OFF


def of(here: Copy, there: Copy, **kw: bool) -> Settlement:
    return settle("h1", "h2", Sighting(here, there, **kw))


@pytest.mark.parametrize(("here", "there", "verdict", "host"), [
    (A, R, Verdict.MOVED, "h2"),
    (S, R, Verdict.MOVED, "h2"),  # source shut off after the switch-over, not yet undefined
    (P, R, Verdict.UNSETTLED, ""),  # destination resumed, source not yet shut off
    (R, A, Verdict.STAYED, "h1"),
    (R, P, Verdict.STAYED, "h1"),  # an incoming domain left behind
    (R, U, Verdict.STAYED, "h1"),  # never switched over: the destination's state is moot
    (A, U, Verdict.MOVED, "h2"),  # the source let go only after the destination confirmed
    (A, A, Verdict.UNSETTLED, ""),
    (P, U, Verdict.UNSETTLED, ""),
    (OFF, R, Verdict.MOVED, "h2"),
    (OFF, A, Verdict.LOST, ""),
    (OFF, U, Verdict.LOST, ""),
])
def test_a_running_vm_at_a_glance(here: Copy, there: Copy, verdict: Verdict, host: str) -> None:
    got = of(here, there)
    assert (got.verdict, got.host) == (verdict, host)


def test_two_running_copies_pause_the_source_then_the_destination_wins() -> None:
    first = of(R, R)
    assert first.verdict is Verdict.UNSETTLED and first.pause == "h1"
    after = of(P, R, paused_here=True)
    assert (after.verdict, after.host, after.remove) == (Verdict.MOVED, "h2", "h1")


def test_a_source_resumed_after_a_cancelled_switch_over_is_paused_while_blind() -> None:
    blind = of(R, U, cancelled=True)
    assert blind.verdict is Verdict.UNSETTLED and blind.pause == "h1"
    seen_again = of(P, R, paused_here=True)
    assert seen_again.verdict is Verdict.MOVED and seen_again.remove == "h1"
    nothing_there = of(P, A, paused_here=True, final=True)
    assert (nothing_there.verdict, nothing_there.resume) == (Verdict.STAYED, "h1")


def test_final_looks_decide_what_a_glance_may_not() -> None:
    assert of(P, R, final=True).verdict is Verdict.MOVED
    assert of(A, A, final=True).verdict is Verdict.LOST
    assert of(S, A, final=True).verdict is Verdict.LOST
    assert of(P, U, final=True).verdict is Verdict.UNSETTLED  # an operator's call
    assert of(A, P, final=True).verdict is Verdict.UNSETTLED  # an incomplete incoming copy


@pytest.mark.parametrize(("here", "there", "verdict"), [
    (A, S, Verdict.MOVED),
    (S, A, Verdict.STAYED),
    (S, S, Verdict.STAYED),  # defined on the destination, not yet undefined here
    (A, R, Verdict.UNSETTLED),  # someone started it: not a cold move's outcome
    (R, A, Verdict.UNSETTLED),
    (A, A, Verdict.UNSETTLED),
])
def test_a_stopped_vm(here: Copy, there: Copy, verdict: Verdict) -> None:
    assert of(here, there, stopped=True).verdict is verdict


copies = st.sampled_from([*DomainState, A, U])


@given(copies, copies, st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_no_settlement_leaves_two_copies_or_records_a_host_without_the_vm(
        here: Copy, there: Copy, stopped: bool, cancelled: bool, paused: bool,
        final: bool) -> None:
    got = of(here, there, stopped=stopped, cancelled=cancelled, paused_here=paused,
             final=final)
    copy = {"h1": here, "h2": there}
    wanted = STOPPED_DOMAIN if stopped else {R}
    if got.pause:
        assert copy[got.pause] is R  # only a running copy is ever paused
    if here is R and there is R:
        assert not got.decided and got.pause == ("h2" if stopped else "h1")
    if got.decided and got.host:
        named = copy[got.host]
        assert named in wanted or got.resume == got.host or named is U \
            or (named is R and stopped)  # a stopped VM someone started meanwhile
        assert got.remove != got.host
        other = "h2" if got.host == "h1" else "h1"
        assert copy[other] is not R or stopped  # never decided beside a running copy
    if got.verdict is Verdict.MOVED and not stopped:
        assert here is not R
