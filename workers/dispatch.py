"""Enqueue tasks only after the database commit that makes their rows visible."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
_PENDING = "packyard.pending_tasks"


def enqueue_after_commit(session: Session, task: Task, *args: Any) -> None:
    session.info.setdefault(_PENDING, []).append((task, args))


@event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    for task, args in session.info.pop(_PENDING, []):
        send(task, *args)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def send(task: Task, *args: Any) -> None:
    """Send now (the caller has committed); a broker outage is logged, not raised."""
    try:
        task.apply_async(args=args)
    except Exception:  # the broker is down: the periodic sweep resends it
        log.exception("could not enqueue %s%r; it will be swept up later", task.name, args)
