"""The upstream's pages as the cache keeps them (``UpstreamProject``).

A page is fetched in the request that first needs it (with short timeouts), then served
from the database.  Once older than ``PACKYARD_UPSTREAM_TTL`` it is still served while a
worker refreshes it, so the upstream's state never slows or fails a page fetched before.
A name the upstream lacks is remembered as missing for the TTL too, then asked again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.domain.tokens import as_utc
from app.domain.upstream.client import PageAnswer, Upstream, UpstreamError, fetch_page
from app.domain.upstream.pages import InvalidPage, UpstreamPage, parse_page
from app.models import UpstreamProject
from app.models.base import utcnow

# last_used_at is written at most this often per page: expiry counts in days.
TOUCH_EVERY = timedelta(hours=1)
# A refresh that has not happened this long after it was asked for is asked for again.
REFRESH_RETRY_AFTER = timedelta(seconds=60)
MAX_ERROR = 1000


@dataclass(frozen=True)
class PageState:
    """A kept page without its content: enough to decide, and to key a rendering."""

    id: int
    digest: str | None  # None: the upstream has no such name
    fetched_at: datetime
    refresh_requested_at: datetime | None
    last_used_at: datetime | None

    def stale(self, ttl: int, now: datetime) -> bool:
        return now - self.fetched_at >= timedelta(seconds=ttl)


def kept_page(
    session: Session, upstream: Upstream, normalized: str, ttl: int
) -> tuple[PageState, bool]:
    """The page's state (fetched now when never fetched, or when remembered missing and
    stale), and whether the caller should send a refresh task (after this commit).

    Raises UpstreamError when a page never fetched cannot be fetched."""
    now = utcnow()
    state = page_state(session, normalized)
    if state is None or (state.digest is None and state.stale(ttl, now)):
        try:
            return refresh_page(session, upstream, normalized), False
        except UpstreamError:
            if state is None:
                raise
            return state, False  # still missing, as far as anyone knows
    _touch(session, state, now)
    due = state.stale(ttl, now) and _claim_refresh(session, state, now, ttl)
    session.commit()
    return state, due


def page_state(session: Session, normalized: str) -> PageState | None:
    row = session.execute(
        select(
            UpstreamProject.id,
            UpstreamProject.digest,
            UpstreamProject.fetched_at,
            UpstreamProject.refresh_requested_at,
            UpstreamProject.last_used_at,
        ).where(UpstreamProject.normalized_name == normalized)
    ).first()
    if row is None:
        return None
    return PageState(row[0], row[1], *(as_utc(moment) for moment in row[2:]))  # type: ignore[arg-type]


def load_page(session: Session, page_id: int) -> UpstreamPage | None:
    data = session.execute(
        select(UpstreamProject.page).where(UpstreamProject.id == page_id)
    ).scalar_one_or_none()
    return UpstreamPage.from_json(data) if data is not None else None


def refresh_page(session: Session, upstream: Upstream, normalized: str) -> PageState:
    """Fetch the page (conditionally when one is kept), keep it, commit.

    A failure is recorded on a kept page, then raised."""
    row = session.execute(
        select(UpstreamProject).where(UpstreamProject.normalized_name == normalized)
    ).scalar_one_or_none()
    kept = row is not None and row.digest is not None
    try:
        answer = fetch_page(
            upstream,
            normalized,
            row.etag if kept and row else None,
            row.last_modified if kept and row else None,
        )
        page = _parsed(answer, normalized)
    except UpstreamError as exc:
        if row is not None:
            _record_failure(session, row, exc.message)
        raise
    row = _keep(session, row, normalized, answer, page)
    session.commit()
    state = page_state(session, normalized)
    assert state is not None
    return state


def _parsed(answer: PageAnswer, normalized: str) -> UpstreamPage | None:
    if answer.status != 200:
        return None
    try:
        return parse_page(answer.body, answer.content_type, answer.url, normalized)
    except InvalidPage as exc:
        raise UpstreamError(f"502 Upstream page for {normalized} is unreadable: {exc}") from None


def _keep(
    session: Session,
    row: UpstreamProject | None,
    normalized: str,
    answer: PageAnswer,
    page: UpstreamPage | None,
) -> UpstreamProject:
    if row is None:
        row = _insert(session, normalized)
    now = utcnow()
    row.fetched_at, row.refresh_requested_at, row.failures, row.last_error = now, None, 0, None
    row.last_used_at = row.last_used_at or now
    if answer.status == 304:
        return row  # unchanged since the kept copy
    row.etag, row.last_modified = answer.etag, answer.last_modified
    if page is None:
        row.page = row.digest = None
    else:
        digest = hashlib.sha256(page.digest_source()).hexdigest()
        if digest != row.digest:
            row.page, row.digest = page.to_json(), digest
    return row


def _insert(session: Session, normalized: str) -> UpstreamProject:
    """A new row; when another request inserted it first, that one."""
    row = UpstreamProject(normalized_name=normalized, fetched_at=utcnow(), failures=0)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return session.execute(
            select(UpstreamProject).where(UpstreamProject.normalized_name == normalized)
        ).scalar_one()
    return row


def _record_failure(session: Session, row: UpstreamProject, message: str) -> None:
    row.failures = (row.failures or 0) + 1
    row.last_error = message[:MAX_ERROR]
    session.commit()


def _touch(session: Session, state: PageState, now: datetime) -> None:
    if state.last_used_at is None or now - state.last_used_at >= TOUCH_EVERY:
        session.execute(
            update(UpstreamProject).where(UpstreamProject.id == state.id).values(last_used_at=now)
        )


def _claim_refresh(session: Session, state: PageState, now: datetime, ttl: int) -> bool:
    """Mark a refresh as asked for, unless one was asked for recently: one task at a time."""
    retry_after = min(REFRESH_RETRY_AFTER, timedelta(seconds=max(ttl, 1)))
    claimed = session.execute(
        update(UpstreamProject)
        .where(
            UpstreamProject.id == state.id,
            or_(
                UpstreamProject.refresh_requested_at.is_(None),
                UpstreamProject.refresh_requested_at < now - retry_after,
            ),
        )
        .values(refresh_requested_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(claimed.rowcount)  # type: ignore[attr-defined]
