"""Tasks on package files. Thin: the work is in app.domain.processing."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from sqlalchemy.exc import OperationalError

from app.domain.audit import SYSTEM, Actor
from app.domain.errors import DATABASE_OUTAGES
from app.domain.processing import give_up, mark_unsent
from app.domain.processing import process_file as process
from app.domain.storage import StorageError
from app.domain.uploads import AcceptedUpload
from app.extensions import db
from app.models import PackageFile
from app.runtime import plugin_manager, storage
from workers.dispatch import send
from workers.tasks.cleanup import remove_stored_files
from workers.tasks.hooks import announce, announce_published

log = logging.getLogger(__name__)
OUTAGES = (OperationalError, OSError, StorageError)  # a later attempt may pass


@shared_task(
    bind=True,
    name="packyard.process_file",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=OUTAGES,
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=8,
)
def process_file(self: Task, file_id: int) -> str | None:
    try:
        state = process(db.session, storage(), file_id)
    except OUTAGES as exc:
        if self.request.retries < self.max_retries:
            raise  # autoretry_for tries again, later
        # The last attempt: the file is marked failed, and a retry from the dashboard is
        # offered (when the database itself is out, this raises and the sweeper resends).
        reason = f"Not processed: {type(exc).__name__}: {exc} (retry once it is back)"
        state = "error" if give_up(db.session, file_id, reason[:2000]) else None
    log.info("file %s processed: %s", file_id, state)
    if state in ("default", "error"):
        _announce(file_id, state)
        _notify_processed(file_id, state)
    return state


def enqueue(file_id: int) -> None:
    """Send the file's task, after the commit that made it ``processing``.

    When the broker is out the file is marked unsent, and the workers' sweeper sends it
    within seconds of the broker being reachable again, not after ``REDELIVER_AFTER``.
    """
    if send(process_file, file_id):
        return
    try:
        mark_unsent(db.session, [file_id])
    except DATABASE_OUTAGES:  # then it looks lost after REDELIVER_AFTER, and is resent
        db.session.rollback()
        log.exception("could not mark file %s unsent", file_id)


def announce_upload(accepted: AcceptedUpload, project_id: int, group_ids: list[int],
                    actor: Actor) -> None:  # fmt: skip
    """Everything after an upload's commit: its ``published`` event if a webhook listens
    (before the task, so hooks hear it first), its processing task, the removal of a
    replaced file. None of it raises: the file is stored and the client must hear so (a
    retry would get "File already exists"). An outage is logged; the sweeper sends the
    task and pending events later, and a ``published`` event the database could not
    queue is lost."""
    announce_published(project_id, group_ids, accepted.package_file, actor)
    enqueue(accepted.file_id)
    remove_stored_files(accepted.storage_deletions)  # a replaced failed file's bytes


def _announce(file_id: int, state: str) -> None:
    package_file = db.session.get(PackageFile, file_id)
    if package_file is not None:
        action = "processed" if state == "default" else "failed"
        announce(package_file.package, action, SYSTEM, package_file)


def _notify_processed(file_id: int, state: str) -> None:
    # At least once: a redelivered task notifies again. A plugin never fails the task.
    try:
        plugin_manager().hook.on_file_processed(file_id=file_id, state=state)
    except Exception:
        log.exception("an on_file_processed plugin failed for file %s", file_id)
