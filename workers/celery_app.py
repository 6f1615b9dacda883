"""Builds the Celery app bound to a Flask app: tasks run inside its app context."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from flask import Flask

from app.config import EMBEDDED_BROKER, broker_url
from workers import (
    embedded,  # noqa: F401  (registers the embedded broker's URL scheme)
    log_context,  # noqa: F401  (request ids, and JSON, in the worker's log lines)
    metrics,  # noqa: F401  (counts every task through Celery's signals)
    pool,  # noqa: F401  (pool children hear stop signals from the main process only)
)

# Seconds a broker may take to answer: more than kombu's 1 s BRPOP timeout, which a
# synchronous read waits out; a broker that hangs instead of refusing fails as fast.
BROKER_SOCKET_TIMEOUT = 2.0

TASK_MODULES = [
    "workers.tasks.files",
    "workers.tasks.cleanup",
    "workers.tasks.upstream",
    "workers.tasks.hooks",
    "workers.tasks.retention",
    "workers.sweeper",
    "workers.heartbeat",  # for the dashboard: which workers are online (embedded broker)
]


def make_celery(flask_app: Flask) -> Celery:
    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with flask_app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(flask_app.import_name, task_cls=FlaskTask, include=TASK_MODULES)
    celery.conf.update(
        broker_url=broker_url(flask_app.config),
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_send_sent_event=True,
        worker_send_task_events=True,
        broker_connection_retry_on_startup=True,
        # A worker reconnects every few seconds, for as long as the broker is away.
        worker_consumer="workers.consumer:Consumer",
        broker_connection_max_retries=None,
        # Sending must never hang an upload when the broker is down; the sweeper resends.
        broker_transport_options={
            "max_retries": 2,
            "interval_start": 0.1,
            "interval_step": 0.2,
            # Without them, a broker that hangs (rather than refuses) holds a publish forever.
            "socket_timeout": BROKER_SOCKET_TIMEOUT,
            "socket_connect_timeout": BROKER_SOCKET_TIMEOUT,
            # Redis redelivers a task whose worker died after this long (default: 1 hour).
            "visibility_timeout": flask_app.config["VISIBILITY_TIMEOUT"],
        },
        # One retry replaces a pooled connection the broker has closed; more would only make
        # the upload wait for a broker that is out (its file is marked unsent instead).
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
        task_default_queue="packyard",
        worker_cancel_long_running_tasks_on_connection_loss=True,
    )
    if flask_app.config["BROKER_URL"] == EMBEDDED_BROKER:
        # A SQLite-backed queue in the data dir (workers.embedded): no external service.
        # It cannot broadcast, so task events (a fanout, for Flower) would reach no one.
        celery.conf.broker_transport_options = {}
        celery.conf.task_send_sent_event = celery.conf.worker_send_task_events = False
    celery.flask_app = flask_app  # for signal handlers (the sweeper)
    celery.set_default()
    flask_app.extensions["celery"] = celery
    return celery
