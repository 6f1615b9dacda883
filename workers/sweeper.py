"""The sweeper: a thread in every worker that resends tasks that were lost, removes
stored files whose deletion task was lost, and (hourly) cached upstream files unused for
``PACKYARD_UPSTREAM_KEEP_DAYS``.

A task can be lost when the broker was down as the web process sent it, or when a
worker died holding it (an embedded-broker worker keeps unacknowledged messages in
memory; Redis only redelivers after its visibility timeout).  Files are the source of
truth: a file still ``processing`` long after its task was sent, which the workers have
passed or stopped making progress on, gets a new task (``claim_stalled``).
Processing is idempotent, so a duplicate costs one cheap no-op.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from flask import Flask

from app.domain.packages import purge_deletions, stale_deletions
from app.domain.processing import claim_stalled
from app.domain.upstream.records import expire_unused
from app.extensions import db
from app.runtime import storage
from workers.dispatch import send
from workers.tasks.files import process_file

log = logging.getLogger(__name__)
_stop = threading.Event()
EXPIRE_EVERY = 3600.0  # seconds between two looks for unused upstream files
_NEXT_EXPIRY = "packyard.next_upstream_expiry"


def sweep_once(app: Flask) -> list[int]:
    """Claim and resend stalled files; returns their ids."""
    with app.app_context():
        older_than = timedelta(seconds=app.config["REDELIVER_AFTER"])
        try:
            file_ids = claim_stalled(db.session, older_than)
        finally:
            db.session.remove()
        for file_id in file_ids:
            send(process_file, file_id)
    if file_ids:
        log.warning("sweeper resent %d stalled file(s): %s", len(file_ids), file_ids[:20])
    return file_ids


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


def _run(app: Flask) -> None:
    interval = float(app.config["SWEEP_INTERVAL"])
    while not _stop.wait(interval):
        for sweep in (sweep_once, sweep_deletions, sweep_upstream_cache):
            try:
                sweep(app)
            except Exception:  # the database may be down: try again next round
                log.exception("sweep failed")


@worker_ready.connect
def _start(sender: Any, **_: Any) -> None:
    app = sender.app.flask_app
    _stop.clear()
    threading.Thread(target=_run, args=(app,), name="packyard-sweeper", daemon=True).start()


@worker_shutdown.connect
def _shutdown(**_: Any) -> None:
    _stop.set()
