"""Applying retention policies. Thin: what to remove is app.domain.retention's answer.

The sweeper sends one task per project holding packages every ``RETENTION_INTERVAL``
seconds; a task recomputes the policy, so a duplicate (two workers' sweepers) finds
nothing more to remove.
"""

from __future__ import annotations

from celery import shared_task
from sqlalchemy.exc import OperationalError

from app.domain.packages import delete_package
from app.domain.retention import ACTOR, preview
from app.extensions import db
from app.models import Project
from workers.tasks.cleanup import remove_stored_files
from workers.tasks.hooks import queue, send_events


@shared_task(
    name="packyard.apply_retention",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def apply_retention(project_id: int) -> int:
    """Remove the releases the project's policy lists; returns how many."""
    project = db.session.get(Project, project_id)
    removals = preview(db.session, project) if project is not None else []
    for removal in removals:
        events = queue(removal.package, "deleted", ACTOR)  # committed with the removal
        remove_stored_files(delete_package(db.session, removal.package, ACTOR))
        send_events(events)
    return len(removals)
