"""Sending tasks: callers send after the commit that makes their rows visible."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

log = logging.getLogger(__name__)


def send(task: Task, *args: Any) -> None:
    """Send now (the caller has committed); a broker outage is logged, not raised."""
    try:
        task.apply_async(args=args)
    except Exception:  # the broker is down: the periodic sweep resends it
        log.exception("could not enqueue %s%r; it will be swept up later", task.name, args)
