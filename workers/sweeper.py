"""The sweeper: a thread in every worker that resends tasks that were lost or never sent,
removes stored files whose deletion task was lost, sends webhook events the broker could
not take and the retention tasks (every ``RETENTION_INTERVAL``), and removes (hourly)
cached upstream files unused for ``PACKYARD_UPSTREAM_KEEP_DAYS``.

A task can be lost when a worker died holding it (an embedded-broker worker keeps
unacknowledged messages in memory; Redis only redelivers after its visibility timeout).
Files are the source of truth: a file still ``processing`` long after its task was sent,
which the workers have passed or stopped making progress on, gets a new task
(``claim_stalled``, every ``SWEEP_INTERVAL``). Processing is idempotent, so a duplicate
costs one cheap no-op.

A task that could not be sent at all (the broker was out) is known as such: its file is
marked unsent (``mark_unsent``). The sweeper looks for those every ``UNSENT_EVERY`` seconds
and sends them, so they go out as soon as the broker is reachable again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from flask import Flask
from sqlalchemy.orm import Session

from app.background import start_daemon_thread
from app.domain.errors import DATABASE_OUTAGES
from app.domain.packages import purge_deletions, stale_deletions
from app.domain.processing import claim_stalled, claim_unsent, mark_unsent
from app.domain.retention import project_ids as retention_project_ids
from app.domain.upstream.records import expire_unused
from app.domain.webhooks import unsent_events
from app.extensions import db
from app.metrics import SWEEPER_RESENT
from app.runtime import storage
from workers.dispatch import send_each
from workers.tasks.files import process_file
from workers.tasks.hooks import deliver_hook_event
from workers.tasks.retention import apply_retention

log = logging.getLogger(__name__)
UNSENT_EVERY = 2.0  # seconds
_stop = threading.Event()
EXPIRE_EVERY = 3600.0  # seconds between two looks for unused upstream files
_NEXT_EXPIRY = "packyard.next_upstream_expiry"
_NEXT_RETENTION = "packyard.next_retention"


def sweep_once(app: Flask) -> list[int]:
    """Claim and resend stalled (and unsent) files; returns the ids sent."""
    older_than = timedelta(seconds=app.config["REDELIVER_AFTER"])
    sent = _send_claimed(app, lambda session: claim_stalled(session, older_than))
    SWEEPER_RESENT.labels("stalled").inc(len(sent))
    if sent:
        log.warning("sweeper resent %d stalled file(s): %s", len(sent), sent[:20])
    return sent


def send_unsent(app: Flask) -> list[int]:
    """Send the files whose task could not be sent before; returns the ids sent."""
    sent = _send_claimed(app, claim_unsent)
    SWEEPER_RESENT.labels("unsent").inc(len(sent))
    if sent:
        log.warning("sweeper sent %d file(s) the broker could not take: %s", len(sent), sent[:20])
    return sent


def _send_claimed(app: Flask, claim: Callable[[Session], list[int]]) -> list[int]:
    with app.app_context():
        try:
            file_ids = claim(db.session)
            unsent = send_each(process_file, file_ids)
            if unsent:  # the broker is out: sent as soon as it is back
                mark_unsent(db.session, unsent)
        finally:
            db.session.remove()
    return file_ids[: len(file_ids) - len(unsent)]  # send_each stops at the first failure


def sweep_deletions(app: Flask) -> int:
    """Remove stored files whose deletion task was lost; returns how many."""
    with app.app_context():
        older_than = timedelta(seconds=app.config["REDELIVER_AFTER"])
        try:
            done = purge_deletions(db.session, storage(), stale_deletions(db.session, older_than))
        finally:
            db.session.remove()
    if done:
        log.warning("sweeper removed %d stored file(s) left by lost deletion tasks", done)
    return done


def sweep_upstream_cache(app: Flask, now: float | None = None) -> int:
    """Remove cached upstream files unused for UPSTREAM_KEEP_DAYS (at most hourly)."""
    now = time.monotonic() if now is None else now
    if now < app.extensions.get(_NEXT_EXPIRY, 0.0):
        return 0
    app.extensions[_NEXT_EXPIRY] = now + EXPIRE_EVERY
    with app.app_context():
        try:
            removed = expire_unused(db.session, storage(), app.config["UPSTREAM_KEEP_DAYS"])
        finally:
            db.session.remove()
    if removed:
        log.info("removed %d cached upstream file(s) unused for the keep period", removed)
    return removed


def sweep_hook_events(app: Flask) -> int:
    """Send webhook events the broker could not take; returns how many were sent."""
    with app.app_context():
        older_than = timedelta(seconds=app.config["REDELIVER_AFTER"])
        try:
            event_ids = unsent_events(db.session, older_than)
        finally:
            db.session.remove()
    sent = len(event_ids) - len(send_each(deliver_hook_event, event_ids))
    if sent:
        log.warning("sweeper sent %d webhook event(s) the broker could not take", sent)
    return sent


def sweep_retention(app: Flask, now: float | None = None) -> int:
    """Send a retention task per project holding packages (every RETENTION_INTERVAL)."""
    now = time.monotonic() if now is None else now
    if now < app.extensions.get(_NEXT_RETENTION, 0.0):
        return 0
    app.extensions[_NEXT_RETENTION] = now + app.config["RETENTION_INTERVAL"]
    with app.app_context():
        try:
            project_ids = retention_project_ids(db.session)
        finally:
            db.session.remove()
    return len(project_ids) - len(send_each(apply_retention, project_ids))


def _run(app: Flask) -> None:
    interval = float(app.config["SWEEP_INTERVAL"])
    next_sweep = time.monotonic() + interval
    while not _stop.wait(min(UNSENT_EVERY, interval)):
        sweeps: tuple[Callable[[Flask], Any], ...] = (send_unsent,)
        if time.monotonic() >= next_sweep:
            sweeps = (sweep_once, sweep_deletions, sweep_upstream_cache, sweep_hook_events,
                      sweep_retention)  # fmt: skip
            next_sweep = time.monotonic() + interval
        for sweep in sweeps:
            try:
                sweep(app)
            except DATABASE_OUTAGES as error:  # every 2 s while it lasts: no traceback
                reason = getattr(error, "orig", None) or error
                log.warning("sweep skipped, the database is unavailable: %s", reason)
            except Exception:
                log.exception("sweep failed")


@worker_ready.connect
def _start(sender: Any, **_: Any) -> None:
    app = sender.app.flask_app
    _stop.clear()
    start_daemon_thread(_run, "packyard-sweeper", app)


@worker_shutdown.connect
def _shutdown(**_: Any) -> None:
    _stop.set()
