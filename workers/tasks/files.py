"""Tasks on package files. Thin: the work is in app.domain.processing."""

from __future__ import annotations

from celery import shared_task
from sqlalchemy.exc import OperationalError

from app.domain.processing import process_file as process
from app.extensions import db
from app.runtime import storage


@shared_task(
    name="packyard.process_file",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, OSError),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=8,
)
def process_file(file_id: int) -> str | None:
    return process(db.session, storage(), file_id)
