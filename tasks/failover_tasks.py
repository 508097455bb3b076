"""Failover tasks: fencing on the controller, restarts on the target host's agent."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import redis

from tasks.app import app
from tasks.runtime import runtime
from tasks.signed import keyring
from workers.fencing import agent_for, register, run_fence
from workers.fencing.lab import LabFenceAgent
from workers.fencing.sim import SimFenceAgent
from workers.hypervisors.sim import SimHypervisor
from workers.monitor import record_outcome
from workers.recovery import restart
from workers.signing import seal_event

log = logging.getLogger(__name__)


def _sim_agent(host: str, fail: bool = False) -> SimFenceAgent:
    store = runtime().store
    return SimFenceAgent(SimHypervisor(store.r, store.keys, host), fail=fail)


register("sim", _sim_agent)
register("lab", LabFenceAgent)


@app.task(name="fleet.host.fence", autoretry_for=(redis.ConnectionError,), retry_backoff=True)
def fence_host(host: str, attempt: int, timeout_s: float, epoch: int = 0) -> dict[str, Any]:
    """Power ``host`` off and confirm it (attempt ``attempt``); the monitor gets the result.

    ``epoch`` is the leadership term of the monitor that decided the fence. It runs only
    if the leader's saved state decided exactly it (``FailoverStore.fence_refusal``):
    the current epoch, the host ``fencing`` at this attempt. A fence decided under a term
    that has since ended is skipped (the new leader decides again from the state it
    inherited), and so is one nobody decided.
    """
    rt = runtime()
    refusal = rt.store.failover.fence_refusal(host, attempt, epoch)
    if refusal:
        detail = f"not decided by the leading monitor: {refusal}; skipped"
        log.warning("fence of %s refused: %s", host, detail)
        rt.store.emit(rt.store.failover.job(host) or "", "host.fence_skipped", host=host,
                      attempt=attempt, detail=detail)
        return {"host": host, "ok": False, "detail": detail, "skipped": True}
    agent = agent_for(host, rt.settings.fence)
    outcome = run_fence(agent, host, timeout_s)
    result = outcome.event()
    rt.store.failover.push(seal_event(keyring(), {
        "type": "fence", "host": host, "ok": result.ok, "detail": result.detail,
        "needs_operator": result.needs_operator}))
    rt.store.journal.count("fencing", agent=agent.kind, result="ok" if result.ok else "failed")
    rt.store.emit(rt.store.failover.job(host) or "", "host.fenced" if result.ok
                  else "host.fence_failed", host=host, agent=agent.kind, attempt=attempt,
                  detail=result.detail)
    return {"host": host, "ok": result.ok, "detail": result.detail}


@app.task(name="fleet.vm.restart", autoretry_for=(redis.ConnectionError,), retry_backoff=True)
def restart_vm(vm: str, source: str, target: str, job_id: str) -> dict[str, Any]:
    """Restart ``vm`` of the fenced host ``source`` here, on ``target``."""
    rt = runtime()
    result = restart(rt.store, rt.hypervisor(target), vm, source)
    rt.store.failover.push(seal_event(keyring(), result.event()))
    record_outcome(rt.store, job_id, vm, result.detail if result.ok
                   else f"failed: {result.detail}")
    rt.store.journal.count("failovers", outcome="restarted" if result.ok else "failed")
    return asdict(result)
