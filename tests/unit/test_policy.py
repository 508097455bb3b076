"""Migration policy: budgets, stalls, downtime steps and escalation."""

from __future__ import annotations

from fleet.core.policy import (
    PolicyConfig,
    Verdict,
    Watch,
    completion_timeout_s,
    decide,
    downtime_steps,
    observe,
)


def test_budget_grows_with_memory_and_has_a_floor() -> None:
    cfg = PolicyConfig(timeout_per_gib_s=100, timeout_min_s=30)
    assert completion_timeout_s(128, cfg) == 30
    assert completion_timeout_s(4096, cfg) == 400


def test_downtime_steps_rise_to_the_ceiling() -> None:
    steps = downtime_steps(PolicyConfig(max_downtime_ms=300, downtime_steps=5,
                                        downtime_ceiling_ms=2300))
    assert steps == [300, 800, 1300, 1800, 2300]


def test_progressing_migration_continues_then_steps_downtime() -> None:
    cfg = PolicyConfig(downtime_step_delay_s=5)
    watch = Watch(started_at=0)
    observe(watch, 1000, 1)
    assert decide(watch, 1024, 1, cfg).verdict is Verdict.CONTINUE
    observe(watch, 900, 6)
    step = decide(watch, 1024, 6, cfg)
    assert step.verdict is Verdict.RAISE_DOWNTIME and step.downtime_ms > cfg.max_downtime_ms


def test_stall_aborts_or_escalates_to_postcopy() -> None:
    watch = Watch(started_at=0)
    observe(watch, 500, 1)
    observe(watch, 500, 30)
    assert decide(watch, 1024, 30, PolicyConfig(stall_timeout_s=20)).verdict is Verdict.ABORT
    post = decide(watch, 1024, 30, PolicyConfig(stall_timeout_s=20, allow_postcopy=True))
    assert post.verdict is Verdict.POSTCOPY


def test_over_budget_aborts_even_while_progressing() -> None:
    cfg = PolicyConfig(timeout_per_gib_s=10, timeout_min_s=10, stall_timeout_s=1000)
    watch = Watch(started_at=0)
    for t in range(0, 40, 2):
        observe(watch, 1000 - t, t)
    decision = decide(watch, 1024, 40, cfg)
    assert decision.verdict is Verdict.ABORT and "budget" in decision.reason


def test_per_vm_overrides() -> None:
    cfg = PolicyConfig().with_overrides({"allow_postcopy": True, "nonsense": 1})
    assert cfg.allow_postcopy is True
