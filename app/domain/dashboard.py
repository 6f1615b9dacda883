"""Background processing as the admin dashboard shows it, read from the package files.

Every upload sends one ``packyard.process_file`` task, and the file row records what
became of it (state, attempts, start and end of the last attempt, error), so the files
are the task history: it survives restarts and needs no result backend.  Broker and
worker status live in ``workers.monitoring``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.domain.audit import Actor, record
from app.domain.errors import InvalidInput, NotFound
from app.domain.packages import delete_file
from app.domain.tokens import as_utc
from app.models import Package, PackageFile, Project
from app.models.base import utcnow
from app.models.packages import FILE_STATES

RECENT_LIMIT = 25
FAILED_LIMIT = 50


@dataclass(frozen=True)
class FileActivity:
    """One file and the processing task that settles it."""

    file_id: int
    filename: str
    package_id: int
    package_name: str
    version: str
    project_path: str
    state: str
    attempts: int
    uploaded_by: str | None
    error_reason: str | None
    retryable: bool
    created_at: datetime
    enqueued_at: datetime | None
    started_at: datetime | None
    processed_at: datetime | None

    @property
    def duration(self) -> float | None:
        """Seconds the last attempt took, once it ended."""
        if self.started_at is None or self.processed_at is None:
            return None
        return max((self.processed_at - self.started_at).total_seconds(), 0.0)

    @property
    def last_activity(self) -> datetime:
        return self.processed_at or self.started_at or self.enqueued_at or self.created_at


@dataclass(frozen=True)
class Bucket:
    """Files settled in one minute."""

    start: datetime
    done: int
    failed: int

    @property
    def total(self) -> int:
        return self.done + self.failed


def recent_activity(
    session: Session, limit: int = RECENT_LIMIT, state: str | None = None
) -> list[FileActivity]:
    """Files by their newest activity (settled, sent, or uploaded), optionally in a state."""
    newest = func.coalesce(
        PackageFile.processed_at, PackageFile.enqueued_at, PackageFile.created_at
    )
    query = (
        select(
            PackageFile.id,
            PackageFile.filename,
            PackageFile.package_id,
            Package.name,
            Package.version,
            Project.full_path,
            PackageFile.state,
            PackageFile.attempts,
            PackageFile.uploaded_by,
            PackageFile.error_reason,
            PackageFile.retryable,
            PackageFile.created_at,
            PackageFile.enqueued_at,
            PackageFile.started_at,
            PackageFile.processed_at,
        )
        .join(Package, Package.id == PackageFile.package_id)
        .join(Project, Project.id == PackageFile.project_id)
        .order_by(newest.desc(), PackageFile.id.desc())
        .limit(limit)
    )
    if state is not None:
        query = query.where(PackageFile.state == state)
    return [_activity(row) for row in session.execute(query)]


def _activity(row: tuple) -> FileActivity:
    *head, created, enqueued, started, processed = row
    return FileActivity(
        *head,
        created_at=as_utc(created),  # type: ignore[arg-type]
        enqueued_at=as_utc(enqueued),
        started_at=as_utc(started),
        processed_at=as_utc(processed),
    )


def state_counts(session: Session) -> dict[str, int]:
    counts = dict.fromkeys(FILE_STATES, 0)
    rows = session.execute(select(PackageFile.state, func.count()).group_by(PackageFile.state))
    counts.update({state: count for state, count in rows})
    return counts


def throughput(session: Session, now: datetime | None = None, minutes: int = 60) -> list[Bucket]:
    """Files settled per minute over the last ``minutes``, oldest minute first.

    Bucketed here, not in SQL, so it reads the same on SQLite and PostgreSQL."""
    now = (now or utcnow()).replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = now - timedelta(minutes=minutes)
    done, failed = [0] * minutes, [0] * minutes
    rows = session.execute(
        select(PackageFile.processed_at, PackageFile.state).where(
            PackageFile.processed_at >= start, PackageFile.state != "processing"
        )
    )
    for processed_at, state in rows:
        index = int((as_utc(processed_at) - start).total_seconds() // 60)  # type: ignore[operator]
        if 0 <= index < minutes:
            (failed if state == "error" else done)[index] += 1
    return [Bucket(start + timedelta(minutes=i), done[i], failed[i]) for i in range(minutes)]


def retry_file(session: Session, file_id: int, actor: Actor) -> PackageFile:
    """Put a file that failed on an outage back to ``processing``; the caller sends its
    task after this commit. A file the worker rejected (corrupt, bad metadata, wrong hash)
    would fail again: it is refused, to be deleted and uploaded anew.

    The state changes with a conditional UPDATE, so two admins clicking at once retry once.
    """
    package_file = _file(session, file_id)
    if package_file.state == "error" and not package_file.retryable:
        raise InvalidInput(
            f"{package_file.filename} cannot pass on a retry ({package_file.error_reason}): "
            "delete it and upload a fixed file"
        )
    result = session.execute(
        update(PackageFile)
        .where(PackageFile.id == file_id, PackageFile.state == "error", PackageFile.retryable)
        .values(
            state="processing",
            error_reason=None,
            retryable=False,
            processed_at=None,
            enqueued_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise InvalidInput(f"{package_file.filename} has not failed: only failed files are retried")
    project = session.get(Project, package_file.project_id)
    assert project is not None  # foreign key
    record(
        session,
        actor,
        "package_file_retried",
        project,
        "PackageFile",
        file_id,
        package_file.filename,
    )
    session.commit()
    session.refresh(package_file)
    return package_file


def delete_failed_file(session: Session, file_id: int, actor: Actor) -> list[int]:
    """Delete a failed file (audited, as from its package page); returns the storage
    deletions for the caller to hand to the workers after this commit."""
    package_file = _file(session, file_id)
    if package_file.state != "error":
        raise InvalidInput(
            f"{package_file.filename} has not failed: delete it from its package page"
        )
    return delete_file(session, package_file, actor)


def _file(session: Session, file_id: int) -> PackageFile:
    package_file = session.get(PackageFile, file_id)
    if package_file is None:
        raise NotFound("404 File Not Found")
    return package_file
