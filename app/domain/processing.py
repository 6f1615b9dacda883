"""What the worker does to a freshly uploaded file: verify it, read its metadata,
and settle it in ``default`` or ``error``. Idempotent: a settled file is left alone."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, false, or_, select, update
from sqlalchemy.orm import Session

from app.domain.archives import ArchiveLimits
from app.domain.errors import InvalidInput
from app.domain.hashing import MultiDigest
from app.domain.metadata import check_matches, parse_metadata, read_metadata_bytes
from app.domain.names import REQUIRES_PYTHON_MAX
from app.domain.storage import StorageBackend
from app.models import PackageFile
from app.models.base import utcnow
from app.models.packages import SUMMARY_MAX

log = logging.getLogger(__name__)
CHUNK = 1024 * 1024


def process_file(
    session: Session, store: StorageBackend, file_id: int, limits: ArchiveLimits | None = None
) -> str | None:
    """Process one file; returns its final state, or None if it no longer exists."""
    package_file = session.get(PackageFile, file_id)
    if package_file is None:
        return None
    if package_file.state != "processing":
        return package_file.state
    package_file.attempts += 1
    package_file.started_at = utcnow()
    session.commit()  # attempts count even when the worker dies mid-way
    try:
        _settle(store, package_file, limits or ArchiveLimits())
        package_file.state = "default"
        package_file.error_reason = None
    except InvalidInput as exc:  # the file itself is wrong: a retry would fail the same way
        log.info("file %s (%s) rejected: %s", file_id, package_file.filename, exc.message)
        package_file.state = "error"
        # Messages can quote the file's own bytes; PostgreSQL text refuses NUL.
        package_file.error_reason = exc.message.replace("\x00", "\\x00")
    package_file.retryable = False
    package_file.processed_at = utcnow()
    state = package_file.state  # read after the commit, it would load the row again
    session.commit()
    return state


def give_up(session: Session, file_id: int, reason: str) -> bool:
    """Settle a file whose every attempt met an outage (storage, database) as failed but
    ``retryable``: the dashboard offers a retry once the outage is over. Returns whether
    it did; a file another attempt settled meanwhile is left alone."""
    session.rollback()
    result = session.execute(
        update(PackageFile)
        .where(PackageFile.id == file_id, PackageFile.state == "processing")
        .values(state="error", retryable=True, error_reason=reason, processed_at=utcnow())
    )
    session.commit()
    return result.rowcount == 1  # type: ignore[attr-defined]


def _settle(store: StorageBackend, package_file: PackageFile, limits: ArchiveLimits) -> None:
    with store.open(package_file.storage_key) as fh:
        _verify_stored_digest(fh, package_file)
        fh.seek(0)
        raw = read_metadata_bytes(fh, package_file.filename, limits)
    meta = parse_metadata(raw)
    package = package_file.package
    check_matches(meta, package.name, package.version)
    requires_python = meta.fields.get("requires_python")
    if requires_python and len(requires_python) > REQUIRES_PYTHON_MAX:
        raise InvalidInput(f"Requires-Python is longer than {REQUIRES_PYTHON_MAX} characters")
    package_file.core_metadata = meta.fields
    summary = str(meta.fields.get("summary") or "").replace("\x00", "")
    package_file.summary = summary[:SUMMARY_MAX] or None
    package_file.metadata_bytes = meta.raw
    package_file.metadata_sha256 = meta.sha256
    if not package_file.requires_python and requires_python:
        package_file.requires_python = requires_python


def _verify_stored_digest(fh: object, package_file: PackageFile) -> None:
    digest = MultiDigest()
    while chunk := fh.read(CHUNK):  # type: ignore[attr-defined]
        digest.update(chunk)
    if digest.sha256 != package_file.sha256 or digest.size != package_file.size:
        raise InvalidInput("Stored file is corrupted: its sha256 no longer matches the upload")


def mark_unsent(session: Session, file_ids: list[int]) -> None:
    """Their task could not be sent (the broker is out): ``enqueued_at`` NULL says so, and
    the workers send it as soon as they can (``claim_unsent``), not when it looks lost."""
    session.execute(
        update(PackageFile)
        .where(PackageFile.id.in_(file_ids), PackageFile.state == "processing")
        .values(enqueued_at=None)
    )
    session.commit()


def claim_stalled(session: Session, older_than: timedelta, limit: int = 500) -> list[int]:
    """Files still ``processing`` whose task looks lost, or was never sent (``enqueued_at``
    NULL, see ``mark_unsent``); the caller sends them again.

    A file qualifies when its task was sent longer ago than ``older_than``, no worker has
    started it within ``older_than`` either, and the workers have passed it (a file whose
    task was sent later is already settled: queues are first in, first out) or have
    stopped making progress at all. A long backlog alone is not a loss: resending it would
    only make the queue longer.

    Each is claimed by moving its ``enqueued_at`` to now with a conditional UPDATE, so
    several sweepers running at once resend a file once.
    """
    cutoff = utcnow() - older_than
    lost = PackageFile.enqueued_at < cutoff
    if _progressed_since(session, cutoff):
        front = _processing_front(session)
        lost = and_(lost, PackageFile.enqueued_at < front) if front is not None else false()
    stale = and_(
        PackageFile.state == "processing",
        or_(PackageFile.started_at.is_(None), PackageFile.started_at < cutoff),
        or_(PackageFile.enqueued_at.is_(None), lost),
    )
    return _claim(session, stale, limit)


def claim_unsent(session: Session, limit: int = 500) -> list[int]:
    """Files whose task could not be sent (``mark_unsent``); the caller sends them now.
    Cheap enough to ask every few seconds: one query on the few ``processing`` rows."""
    unsent = and_(PackageFile.state == "processing", PackageFile.enqueued_at.is_(None))
    return _claim(session, unsent, limit)


def _claim(session: Session, condition: ColumnElement[bool], limit: int) -> list[int]:
    """Move the ``enqueued_at`` of the files meeting ``condition`` to now, each with a
    conditional UPDATE: of several sweepers running at once, one claims each file."""
    now = utcnow()
    query = select(PackageFile.id).where(condition).order_by(PackageFile.id).limit(limit)
    claimed = []
    for file_id in session.execute(query).scalars().all():
        result = session.execute(
            update(PackageFile).where(PackageFile.id == file_id, condition).values(enqueued_at=now)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            claimed.append(file_id)
    session.commit()
    return claimed


def _progressed_since(session: Session, since: datetime) -> bool:
    """Whether the workers settled or started any file ``since``."""
    recent = or_(
        PackageFile.processed_at >= since,
        and_(PackageFile.state == "processing", PackageFile.started_at >= since),
    )
    return session.execute(select(PackageFile.id).where(recent).limit(1)).first() is not None


def _processing_front(session: Session) -> datetime | None:
    """When the task of the file settled last was sent."""
    return session.execute(
        select(PackageFile.enqueued_at)
        .where(PackageFile.processed_at.is_not(None))
        .order_by(PackageFile.processed_at.desc())
        .limit(1)
    ).scalar()
