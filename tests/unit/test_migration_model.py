"""The pre-copy model behind simulated migrations."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fleet.core.migration_model import PrecopyModel


def run(model: PrecopyModel, step: float = 0.1, limit_s: float = 600) -> PrecopyModel:
    while not model.done and model.elapsed_s < limit_s:
        model.advance(step)
    return model


def test_idle_guest_copies_once() -> None:
    model = run(PrecopyModel(1024, 512, 0.0))
    assert model.done and model.iteration == 1
    assert abs(model.processed_mib - 1024) < 1e-6
    assert 1.9 < model.elapsed_s < 2.1


def test_dirty_guest_needs_more_iterations_and_data() -> None:
    idle = run(PrecopyModel(2048, 500, 0.0))
    dirty = run(PrecopyModel(2048, 500, 150.0))
    assert dirty.done and dirty.iteration > idle.iteration
    assert dirty.processed_mib > idle.processed_mib
    assert dirty.downtime_ms <= 300


def test_guest_dirtying_faster_than_the_link_never_converges() -> None:
    model = run(PrecopyModel(1024, 100, 150.0), limit_s=60)
    assert not model.converges() and not model.done
    assert model.remaining_mib > 0


@given(memory=st.integers(64, 16384), bw=st.integers(50, 2000),
       dirty=st.floats(0, 0.8))
def test_progress_is_monotone_and_bounded(memory: int, bw: int, dirty: float) -> None:
    model = PrecopyModel(memory, bw, dirty * bw)
    last = -1.0
    step = memory / bw / 20
    for _ in range(2000):
        model.advance(step)
        assert model.processed_mib >= last
        assert 0 <= model.remaining_mib <= memory
        last = model.processed_mib
    assert model.done
