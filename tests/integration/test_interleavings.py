"""Fleet's executors in random interleavings against a real redis-server (see
``fleet_machine``): 2,000 of them, each a fresh small fleet."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.integration.fleet_machine import machine

EXAMPLES = int(os.environ.get("FLEET_INTERLEAVINGS", "2000"))


@pytest.mark.timeout(1200)
def test_random_interleavings_keep_every_invariant(redis_url: str) -> None:
    run_state_machine_as_test(
        machine(redis_url),
        settings=settings(max_examples=EXAMPLES, stateful_step_count=20, deadline=None,
                          suppress_health_check=list(HealthCheck), database=None,
                          phases=[Phase.generate]))  # a failure is shown as found
