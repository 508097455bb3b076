"""The pure core of fleet: models, state machines, policies and ports.

Nothing here performs I/O or imports celery, redis or libvirt (checked by import-linter).
"""
