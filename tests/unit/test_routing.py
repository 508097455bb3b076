"""Queue routes and worker names."""

from __future__ import annotations

import pytest

from tasks.routing import CONTROL_QUEUE, route_task, worker_name


def test_workers_are_named_after_their_hosts() -> None:
    assert worker_name(["h1"]) == "agent-h1"
    assert worker_name(["h1", "h2", "h3"]) == "agent-h1+h2+h3"
    many = [f"h{i}" for i in range(1, 201)]
    assert worker_name(many) == "agent-h1..h200(200)"


def test_host_tasks_go_to_their_host_and_the_rest_to_control() -> None:
    assert route_task("fleet.move.run", (), {"source": "h2"}, {}) == {"queue": "host.h2"}
    assert route_task("fleet.vm.restart", (), {"source": "h1", "target": "h3"}, {}) == {
        "queue": "host.h3"}
    assert route_task("fleet.job.start", (), {"job_id": "j"}, {}) == {"queue": CONTROL_QUEUE}
    with pytest.raises(ValueError, match="needs a source host"):
        route_task("fleet.move.run", (), {}, {})
