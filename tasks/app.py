"""The Celery application: JSON only, explicit routes, prefetch 1, long visibility timeout.

Broker and result keys sit under ``<prefix>:celery:`` (kombu's ``global_keyprefix``), so
fleet writes nothing outside its prefix. One ``visibility_timeout`` serves broker and
results, well above the longest migration (settings.visibility_timeout_s).

A broker restart must not stop a worker: creating the app installs ``tasks.resilience``,
and a task in flight when the connection drops keeps running (the threads pool cannot
cancel it anyway); its move's lease and fleet's reconciler decide what became of it.
"""

from __future__ import annotations

from celery import Celery

from fleet.core.sentinel_url import SENTINEL, parse_sentinel
from fleet.settings import Settings, load_settings
from fleet.store.keys import Keys
from tasks import resilience
from tasks.routing import CONTROL_QUEUE, route_task

TASK_MODULES = ["tasks.host_tasks", "tasks.control_tasks", "tasks.failover_tasks"]


def celery_config(settings: Settings) -> dict[str, object]:
    transport: dict[str, object] = {
        "visibility_timeout": settings.visibility_timeout_s,
        "global_keyprefix": Keys(settings.prefix).celery,
    }
    url = settings.redis_url
    if url.startswith(SENTINEL):
        url, options = parse_sentinel(url).celery()
        transport.update(options)
    return {
        "broker_url": url,
        "result_backend": url,
        "broker_transport_options": transport,
        "result_backend_transport_options": dict(transport),
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "task_default_queue": CONTROL_QUEUE,
        "task_routes": (route_task,),
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # STARTED is in Flower's events; a result write per task start would only cost
        "task_track_started": False,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
        # results go with the jobs they belong to (a day at most): memory stays bounded
        "result_expires": int(min(86400.0, settings.retention_s)),
        "broker_connection_retry_on_startup": True,
        "timezone": "UTC",
    }


def create_app(settings: Settings) -> Celery:
    resilience.install()
    app = Celery("fleet", include=TASK_MODULES, task_cls="tasks.signed:SignedTask")
    app.conf.update(celery_config(settings))
    return app


app = create_app(load_settings())


def reconfigure(settings: Settings) -> None:
    """Point this process's app at other settings (tests, the demo).

    Connections already pooled for the old broker and result backend are dropped, so
    nothing keeps talking to the old address.
    """
    app.conf.update(celery_config(settings))
    from tasks.signed import forget_signing

    forget_signing()
    pool = app._pool
    if pool is not None:
        pool.force_close_all()
        app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    app._backend_cache = None
    if hasattr(app._local, "backend"):
        del app._local.backend
