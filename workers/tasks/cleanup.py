"""Removing stored files whose rows were deleted. Thin: the work is in app.domain.packages."""

from __future__ import annotations

from celery import shared_task
from sqlalchemy.exc import OperationalError

from app.domain.packages import purge_deletions
from app.domain.storage import StorageError
from app.extensions import db
from app.runtime import storage
from workers.dispatch import send


@shared_task(
    name="packyard.delete_stored_files",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, OSError, StorageError),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=8,
)
def delete_stored_files(deletion_ids: list[int]) -> int:
    """Delete the files of these pending storage deletions; idempotent."""
    return purge_deletions(db.session, storage(), deletion_ids)


def remove_stored_files(deletion_ids: list[int]) -> None:
    """Hand committed deletions to the workers; if the broker is down, the sweeper removes
    the files later (the deletions are rows)."""
    if deletion_ids:
        send(delete_stored_files, deletion_ids)
