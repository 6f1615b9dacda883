"""Delivering webhook events. Thin: the work is in app.domain.webhooks.

A failed POST is retried ``WEBHOOK_RETRIES`` times, after ``WEBHOOK_RETRY_DELAY`` seconds
and twice as long each time; each POST waits at most ``WEBHOOK_TIMEOUT`` seconds, so a
receiver that hangs holds a worker that long and never an upload (events are sent after
the commit, by the workers).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from celery import Task, shared_task
from flask import current_app, has_request_context, request
from sqlalchemy.exc import OperationalError

from app.domain.audit import Actor
from app.domain.errors import DATABASE_OUTAGES
from app.domain.webhooks import deliver, queue_package_event
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
    try:
        event_ids = queue(package, action, actor, package_file)
        if event_ids:
            db.session.commit()
    except DATABASE_OUTAGES:
        db.session.rollback()
        log.exception("could not queue the %s event of package %s", action, package.id)
        return
    send_events(event_ids)
