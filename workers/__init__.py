"""What runs inside fleet's Celery workers: hypervisor adapters, the migration runner,
the reconciler, job orchestration and heartbeats. Imports the store and the core, never
``tasks`` or the CLI."""
