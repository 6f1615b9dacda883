"""Task metrics, counted in the base of every task (Celery's signals), never in a task:
run time by outcome, failures, retries; and ending processes marked dead for the
multiprocess counts (``app.metrics.exposition``)."""

from __future__ import annotations

import time
from typing import Any

from celery.signals import (
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from app.metrics import SWEEPER_RESENT, TASK_DURATION, TASK_FAILURES, TASK_RETRIES
from app.metrics.exposition import mark_dead

_started: dict[str, float] = {}  # task id -> perf_counter at prerun, in this process


@worker_ready.connect
def _zero(sender: Any, **_: Any) -> None:
    """Failure, retry and resend counts start at 0, so they are in every scrape (and
    ``rate()`` sees their first increase)."""
    for name in sender.app.tasks:
        if not name.startswith("celery."):
            TASK_FAILURES.labels(name)
            TASK_RETRIES.labels(name)
    for reason in ("stalled", "unsent"):
        SWEEPER_RESENT.labels(reason)


@task_prerun.connect
def _prerun(task_id: str, **_: Any) -> None:
    _started[task_id] = time.perf_counter()


@task_postrun.connect
def _postrun(task_id: str, task: Any, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        outcome = (state or "unknown").lower()
        TASK_DURATION.labels(task.name, outcome).observe(time.perf_counter() - started)


@task_failure.connect
def _failure(sender: Any, **_: Any) -> None:
    TASK_FAILURES.labels(sender.name).inc()


@task_retry.connect
def _retry(sender: Any, **_: Any) -> None:
    TASK_RETRIES.labels(sender.name).inc()


@worker_process_shutdown.connect
@worker_shutdown.connect
def _ended(**_: Any) -> None:
    mark_dead()
