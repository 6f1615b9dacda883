"""Delivering webhook events. Thin: the work is in app.domain.webhooks.

A failed POST is retried ``WEBHOOK_RETRIES`` times, after ``WEBHOOK_RETRY_DELAY`` seconds
and twice as long each time; each POST waits at most ``WEBHOOK_TIMEOUT`` seconds, so a
receiver that hangs holds a worker that long and never an upload (events are sent after
the commit, by the workers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from celery import Task, shared_task
from flask import current_app, has_request_context, request
from sqlalchemy import inspect
from sqlalchemy.exc import OperationalError

from app.domain.audit import Actor
from app.domain.errors import DATABASE_OUTAGES
from app.domain.webhooks import any_listening_hook, deliver, queue_package_event
from app.extensions import db
from app.models import Package, PackageFile
from workers.dispatch import send_each

log = logging.getLogger(__name__)


@shared_task(
    name="packyard.deliver_hook_event",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=None,  # the receiver's failures count against WEBHOOK_RETRIES below
)
def deliver_hook_event(self: Task, event_id: int) -> bool | None:
    config = current_app.config
    tries = int(self.request.retries)
    last_try = tries >= config["WEBHOOK_RETRIES"]
    delivered = deliver(db.session, event_id, config["WEBHOOK_TIMEOUT"], last_try=last_try)
    if delivered is False and not last_try:
        raise self.retry(countdown=config["WEBHOOK_RETRY_DELAY"] * 2**tries)
    return delivered


def send_events(event_ids: Sequence[int]) -> None:
    """Hand committed events to the workers; an event the broker could not take stays
    pending, and the sweeper sends it later."""
    send_each(deliver_hook_event, list(event_ids))


def base_url() -> str:
    """The instance's address for the links in payloads: BASE_URL, else the request's."""
    configured = current_app.config["BASE_URL"]
    if configured:
        return str(configured).rstrip("/")
    return request.host_url.rstrip("/") if has_request_context() else ""


def queue(package: Package, action: str, actor: Actor,
          package_file: PackageFile | None = None) -> list[int]:  # fmt: skip
    """Queue the package's event with the caller's unit of work (see queue_package_event)."""
    return queue_package_event(db.session, package, action, actor, package_file, base_url())


def queue_file_deletion(package_file: PackageFile, actor: Actor) -> list[int]:
    """Queue ``package_deleted`` when deleting this file deletes its release (its last)."""
    package = package_file.package
    return queue(package, "deleted", actor) if len(package.files) == 1 else []


def announce(package: Package, action: str, actor: Actor,
             package_file: PackageFile | None = None) -> None:  # fmt: skip
    """Queue the event of a change already committed, commit it, and send it. A database
    failure here is logged: the change it reports stands."""
    _queue_and_send(lambda: queue(package, action, actor, package_file),
                    f"the {action} event of package", package)  # fmt: skip


def announce_published(project_id: int, group_ids: list[int], package_file: PackageFile,
                       actor: Actor) -> None:  # fmt: skip
    """``published`` for a file just committed, if a webhook hears its project: asked by
    ids known before the commit, so that without hooks nothing is read back. Like
    ``announce``, a database outage is logged, never raised."""

    def queued() -> list[int]:
        if not any_listening_hook(db.session, project_id, group_ids):
            return []
        return queue(package_file.package, "published", actor, package_file)

    _queue_and_send(queued, "the published event of file", package_file)


def _queue_and_send(queued: Callable[[], list[int]], what: str,
                    row: Package | PackageFile) -> None:  # fmt: skip
    """Run ``queued``, commit its events and send them; on an outage, log ``what`` and
    ``row``'s id (worked out only then: every upload passes here)."""
    try:
        event_ids = queued()
        if event_ids:
            db.session.commit()
    except DATABASE_OUTAGES:
        db.session.rollback()
        log.exception("could not queue %s %s", what, _key(row))
        return
    send_events(event_ids)


def _key(row: Package | PackageFile) -> object:
    # Its id without a query: after a commit or the rollback, reading ``row.id`` would
    # load the row again from the database that just failed.
    identity = inspect(row).identity
    return identity[0] if identity else None
