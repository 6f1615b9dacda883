"""Sending tasks: callers send after the commit that makes their rows visible."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from celery import Task

from app.logs import TASK_HEADER, request_id

log = logging.getLogger(__name__)


def send(task: Task, *args: Any) -> bool:
    """Send now (the caller has committed); a broker outage is logged, not raised.

    Returns whether the task was sent. Publishing retries briefly (``celery_app``'s
    transport options), so a broker that is down costs the caller well under a second.
    """
    sent_by = request_id.get()  # the worker's log lines then name the request
    try:
        task.apply_async(args=args, headers={TASK_HEADER: sent_by} if sent_by else None)
    except Exception:  # the broker is down: the periodic sweep resends it
        log.exception("could not enqueue %s%r; it will be swept up later", task.name, args)
        return False
    return True


def send_each(task: Task, ids: Sequence[int]) -> list[int]:
    """Send ``task(id)`` for each id; returns those not sent. The first failure ends it:
    the broker is down, and each further attempt would only wait for it again."""
    for index, item in enumerate(ids):
        if not send(task, item):
            return list(ids[index:])
    return []
