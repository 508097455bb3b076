"""Queue names and explicit routes: host tasks go to ``host.<source>``, the rest to control."""

from __future__ import annotations

from typing import Any

CONTROL_QUEUE = "fleet.control"
HOST_TASK_PREFIXES = ("fleet.vm.", "fleet.move.")
ROUTE_BY = {"fleet.vm.restart": "target"}
"""Host tasks run on their ``source`` host's agent, except those named here."""


def host_queue(host: str) -> str:
    return f"host.{host}"


def worker_name(hosts: list[str], limit: int = 60) -> str:
    """The Celery worker name of an agent, after the hosts it serves: ``agent-h1``,
    ``agent-h1+h2+h3``, or for many ``agent-h1..h200(200)`` (first, last, count)."""
    joined = "agent-" + "+".join(hosts)
    if len(joined) <= limit:
        return joined
    return f"agent-{hosts[0]}..{hosts[-1]}({len(hosts)})"


def route_task(name: str, args: Any, kwargs: dict[str, Any], options: Any,
               task: Any = None, **_: Any) -> dict[str, str]:
    """Celery router: host tasks by their ``source`` kwarg, everything else to control."""
    if name.startswith(HOST_TASK_PREFIXES):
        key = ROUTE_BY.get(name, "source")
        host = (kwargs or {}).get(key)
        if not host:
            raise ValueError(f"{name} needs a {key} host to be routed")
        return {"queue": host_queue(str(host))}
    return {"queue": CONTROL_QUEUE}

FLOWER_COLUMNS = "--tasks_columns=name,uuid,state,kwargs,result,received,runtime,worker"
"""Flower's task list shows what each task is about (VM, hosts, job) and its outcome."""
