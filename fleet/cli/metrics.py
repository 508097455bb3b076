"""Prometheus metrics of a fleet, read from the store at every scrape.

Gauges come from current records (jobs, moves, hosts, heartbeats); counters from the
journal's counters, which the runner, monitor and fencing code increment.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from fleet.store import Store

COUNTERS = {
    "moves_finished": ("fleet_moves_finished", "Moves finished, by outcome", ["state"]),
    "failovers": ("fleet_failovers", "Failover outcomes per VM", ["outcome"]),
    "fencing": ("fleet_fencing", "Fencing attempts, by agent and result",
                ["agent", "result"]),
    "alerts": ("fleet_alerts", "Alerts raised (storm, fence_failed, agent_silent, "
               "two_copies, vm_restart_limit, ...), by kind", ["kind"]),
    "vm_restarts": ("fleet_vm_restarts", "HA VMs started again on their own host by the"
                    " VM guard, by outcome", ["outcome"]),
}


class FleetCollector(Collector):
    """Collects fleet's metrics from one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        yield from self._jobs_and_moves()
        yield from self._hosts()
        yield from self._counters()
        yield from self._migrations()

    def _jobs_and_moves(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("fleet_jobs", "Recent jobs by state", labels=["state"])
        for state, n in sorted(Counter(j.state for j in self.store.list_jobs(1000)).items()):
            jobs.add_metric([state], n)
        yield jobs
        moves = GaugeMetricFamily("fleet_moves_active", "Moves in flight by state",
                                  labels=["state"])
        for state, n in sorted(Counter(m.state for m in self.store.active_moves()).items()):
            moves.add_metric([state], n)
        yield moves

    def _hosts(self) -> Iterator[Metric]:
        states = GaugeMetricFamily("fleet_host_state", "1 for each host's current state",
                                   labels=["host", "state"])
        age = GaugeMetricFamily("fleet_heartbeat_age_seconds", "Age of the last heartbeat",
                                labels=["host"])
        up = GaugeMetricFamily("fleet_agent_up", "1 if the host's agent heartbeats",
                               labels=["host"])
        now = time.time()
        for host in self.store.list_hosts():
            states.add_metric([host.name, host.state], 1)
            beat = self.store.heartbeat(host.name)
            up.add_metric([host.name], 1 if beat else 0)
            if beat:
                age.add_metric([host.name], max(0.0, now - float(beat.get("at", now))))
        yield from (states, age, up)

    def _counters(self) -> Iterator[Metric]:
        for key, (name, doc, labels) in COUNTERS.items():
            family = CounterMetricFamily(name, doc, labels=labels)
            for got, value in self.store.journal.counters(key):
                family.add_metric([got.get(label, "") for label in labels], value)
            yield family

    def _migrations(self) -> Iterator[Metric]:
        keys = ("migration_seconds_sum", "migration_seconds_count", "migrated_mib",
                "downtime_ms_sum")
        total = {k: sum(v for _, v in self.store.journal.counters(k)) for k in keys}
        summary = SummaryMetricFamily("fleet_migration_seconds", "Successful migrations")
        summary.add_metric([], int(total["migration_seconds_count"]),
                           total["migration_seconds_sum"])
        yield summary
        data = CounterMetricFamily("fleet_migrated_bytes", "Bytes sent by migrations")
        data.add_metric([], total["migrated_mib"] * 1024 * 1024)
        yield data
        downtime = CounterMetricFamily("fleet_migration_downtime_ms", "Sum of downtimes")
        downtime.add_metric([], total["downtime_ms_sum"])
        yield downtime


def serve(store: Store, address: str, port: int) -> None:
    """Serve /metrics until interrupted."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(FleetCollector(store))
    start_http_server(port, addr=address, registry=registry)
    while True:
        time.sleep(3600)
