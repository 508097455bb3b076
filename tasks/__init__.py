"""fleet's Celery app and thin task definitions: ids in, call the domain, map errors."""
