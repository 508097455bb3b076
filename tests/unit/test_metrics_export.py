"""The Prometheus collector exports the journal's counters under their documented names."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from fleet.cli.metrics import FleetCollector
from fleet.store import Store


def scrape(store: Store) -> str:
    registry = CollectorRegistry()
    registry.register(FleetCollector(store))
    return generate_latest(registry).decode()


def test_counters_are_exported_with_their_labels(fleet3: Store) -> None:
    journal = fleet3.journal
    journal.count("alerts", kind="agent_silent")
    journal.count("alerts", kind="agent_silent")
    journal.count("alerts", kind="storm")
    journal.count("fencing", agent="ipmi", result="failed")
    journal.count("failovers", outcome="restarted")
    journal.count("vm_restarts", outcome="started")
    text = scrape(fleet3)
    for line in ('fleet_alerts_total{kind="agent_silent"} 2.0',
                 'fleet_alerts_total{kind="storm"} 1.0',
                 'fleet_fencing_total{agent="ipmi",result="failed"} 1.0',
                 'fleet_failovers_total{outcome="restarted"} 1.0',
                 'fleet_vm_restarts_total{outcome="started"} 1.0',
                 'fleet_host_state{host="h1",state="active"} 1.0'):
        assert line in text, line
