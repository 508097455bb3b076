"""fleet: an orchestrator for KVM fleets (placement, drains, live migration, failover).

The package is layered. ``fleet.core`` is pure domain logic; ``fleet.store`` keeps state in
Redis; ``workers`` runs on hosts; ``tasks`` is the Celery app; ``fleet.cli`` is the outside.
"""

__version__ = "0.1.0"
