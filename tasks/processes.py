"""Long-running processes: the agent (host queues) and the controller (control queue).

Each starts a Celery worker in this process with the threads pool, so the hypervisor
connections, heartbeats and reconciler live in the same process that runs the tasks.
"""

from __future__ import annotations

import logging
import socket
import time

from fleet.settings import Settings, redacted
from fleet.store import Store
from fleet.store.connection import server_id
from tasks.app import app
from tasks.control_tasks import request_advance
from tasks.routing import CONTROL_QUEUE, host_queue, worker_name
from tasks.runtime import Runtime, configure
from tasks.signed import configure_signing, send
from workers.fencing import kinds
from workers.heartbeat import Ticker, beat_hosts, beat_surveyed
from workers.hostfacts import Registration
from workers.hypervisors.sim import survey
from workers.inventory import sweep_strays
from workers.reconciler import Reconciler
from workers.signing import AGENT
from workers.watcher import HostWatcher

log = logging.getLogger(__name__)


def _worker(queues: list[str], name: str, concurrency: int) -> None:
    app.worker_main([
        "worker", "-Q", ",".join(queues), "-n", f"{name}@{socket.gethostname()}",
        "-P", "threads", "-c", str(concurrency), "-E", "--prefetch-multiplier", "1",
        "-l", "INFO", "--without-mingle", "--without-gossip",
    ])


def start_watchers(rt: Runtime, reg: Registration) -> list[HostWatcher]:
    """Register every served host (facts from its hypervisor), then keep records in step
    with its domains (libvirt hosts only)."""
    watchers = [HostWatcher(rt.store, rt.hypervisor(h), rt.settings, reg, rt.locate,
                            scan_domains=rt.driver != "sim") for h in rt.hosts]
    for watcher in watchers:
        watcher.round()
        watcher.start()
    return watchers


def heartbeats(rt: Runtime) -> Ticker:
    """One ticker for every host this agent serves, on its own Redis connection (sim
    hosts read through it too), so heartbeats never wait behind task work; all hosts'
    heartbeats go in one round trip."""
    s = rt.settings
    beats = Store.connect(s.redis_url, s.prefix, max_connections=2,
                          ride_out_s=s.redis_ride_out_s)
    hvs = [] if rt.driver == "sim" else [rt.hypervisor(h) for h in rt.hosts]
    started = [0.0]

    def beat() -> None:
        started[0] = time.monotonic()
        if rt.driver == "sim":  # every simulated host's domains in one round trip
            seen = survey(beats.r, beats.keys, rt.hosts)
            beat_surveyed(beats, seen, rt.runner_id, s.heartbeat_ttl_s)
        else:
            beat_hosts(beats, hvs, rt.runner_id, s.heartbeat_ttl_s)

    def pause() -> float:  # a fixed rate: a slow round does not stretch the period
        return max(0.0, s.heartbeat_interval_s - (time.monotonic() - started[0]))

    return Ticker("heartbeats", s.heartbeat_interval_s, beat, pause)


def start_agent_threads(rt: Runtime) -> list[Ticker]:
    s = rt.settings
    tickers = [heartbeats(rt)]
    reconciler = Reconciler(rt.store, {h: rt.hypervisor(h) for h in rt.hosts}, rt.locate, s,
                            rt.runner_id(rt.hosts[0]))

    def reconcile() -> None:
        for host in rt.hosts:
            sweep_strays(rt.store, rt.hypervisor(host), rt.locate)
        for outcome in reconciler.sweep():
            move = rt.store.get_move(outcome.move_id)
            log.warning("reconciled move %s: %s %s", move.id, outcome.state, outcome.detail)
            request_advance(move.job_id)

    tickers.append(Ticker("reconciler", s.reconcile_interval_s, reconcile))
    for ticker in tickers:
        ticker.start()
    return tickers


def run_agent(settings: Settings, hosts: list[str], driver: str, uri: str,
              reg: Registration) -> None:
    configure_signing(settings, AGENT)
    rt = configure(settings, hosts, driver, uri)
    start_watchers(rt, reg)
    start_agent_threads(rt)
    _worker([host_queue(h) for h in hosts], worker_name(hosts),
            concurrency=max(4, 2 * len(hosts)))


def recount_after_a_switch(store: Store, last: str) -> str:
    """Recount the capacity ledger when another Redis server answers than last time (a
    Sentinel promotion may lose or, through a retried command, repeat a recent write);
    returns the server's run id."""
    now = server_id(store.r)
    if last and now != last:
        log.warning("another Redis server answers (run id %s, was %s): recounting the"
                    " capacity ledger", now, last)
        store.rebuild_ledger()
    return now


def run_controller(settings: Settings) -> None:
    from tasks.control_tasks import service

    configure_signing(settings)
    rt = configure(settings)
    jobs = service()
    me = f"controller@{socket.gethostname()}"
    fence_kinds = kinds(settings.fence)

    server = [""]

    def sweep() -> None:
        now = time.time()
        server[0] = recount_after_a_switch(rt.store, server[0])
        rt.store.failover.publish_fence(me, fence_kinds, now)
        jobs.sweep(settings.redeliver_after_s, settings.pending_job_after_s)
        rt.store.prune_jobs(now - settings.retention_s)
        rt.store.journal.trim_audit(now - settings.retention_s)

    sweep()
    Ticker("job-sweeper", settings.reconcile_interval_s, sweep).start()
    _worker([CONTROL_QUEUE], "controller", concurrency=4)


def run_monitor(settings: Settings, name: str) -> None:
    """Watch heartbeats and drive failover until interrupted (one leader acts)."""
    from workers.monitor import Monitor

    rt = configure(settings)

    monitor = Monitor(rt.store, settings, f"{name}/{rt.instance}", send,
                      keyring=configure_signing(settings))
    log.info("monitor %s watching %s", monitor.me, redacted(settings.redis_url))
    if settings.fence:
        log.warning("FLEET_FENCE given to the monitor is not used: the controller runs the"
                    " fence agents with its own; now %s",
                    rt.store.failover.fence_config() or "unpublished")
    while True:
        started = time.monotonic()
        try:
            monitor.tick()
        except Exception:  # one bad round must not stop failover
            log.exception("monitor round failed")
        time.sleep(max(0.0, settings.monitor_interval_s - (time.monotonic() - started)))
