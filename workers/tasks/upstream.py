"""Refreshing kept upstream pages. Thin: the work is in app.domain.upstream.index."""

from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from app.domain.upstream.client import Upstream, UpstreamError
from app.domain.upstream.index import refresh_page
from app.extensions import db

log = logging.getLogger(__name__)


@shared_task(name="packyard.refresh_upstream_page", acks_late=True, reject_on_worker_lost=True)
def refresh_upstream_page(normalized: str) -> bool:
    """Fetch a stale page again. A failure is quiet: the kept page is still served, and
    the next request for it after a while asks for another refresh."""
    try:
        refresh_page(db.session, Upstream.from_config(current_app.config), normalized)
    except UpstreamError as exc:
        log.info("upstream page %s not refreshed: %s", normalized, exc.message)
        return False
    return True
