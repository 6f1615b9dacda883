"""What the cache pulled from the upstream, for operators: listings, totals, purges and
the removal of files nobody used for ``PACKYARD_UPSTREAM_KEEP_DAYS``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from app.caching.generation import bump
from app.domain.audit import Actor, record
from app.domain.errors import NotFound
from app.domain.names import normalize
from app.domain.packages import purge_deletions
from app.domain.storage import StorageBackend
from app.models import StorageDeletion, UpstreamFile, UpstreamProject
from app.models.base import utcnow

PURGE_BATCH = 200


def files_query(name: str | None = None) -> Select[tuple[UpstreamFile]]:
    """Recorded files, most recently used first; ``name``: of that project only."""
    query = select(UpstreamFile).order_by(
        func.coalesce(UpstreamFile.last_used_at, UpstreamFile.created_at).desc(),
        UpstreamFile.id.desc(),
    )
    if name:
        query = query.where(UpstreamFile.normalized_name == normalize(name))
    return query


def pages_query(name: str | None = None) -> Select[tuple[UpstreamProject, int, int]]:
    """Kept pages by name, each with how many of its files are stored and their bytes."""
    stored = (
        select(
            UpstreamFile.normalized_name,
            func.count(UpstreamFile.id).label("files"),
            func.sum(UpstreamFile.size).label("bytes"),
        )
        .where(UpstreamFile.stored.is_(True))
        .group_by(UpstreamFile.normalized_name)
        .subquery()
    )
    query = (
        select(
            UpstreamProject,
            func.coalesce(stored.c.files, 0),
            func.coalesce(stored.c.bytes, 0),
        )
        .outerjoin(stored, stored.c.normalized_name == UpstreamProject.normalized_name)
        .order_by(UpstreamProject.normalized_name)
    )
    if name:
        query = query.where(UpstreamProject.normalized_name == normalize(name))
    return query


@dataclass(frozen=True)
class CacheTotals:
    pages: int
    files: int  # recorded: asked for at least once
    fetches: int  # downloaded from the upstream and stored
    hits: int  # answered from storage
    failures: int  # failed upstream fetches (pages and files)
    bytes_stored: int
    bytes_served: int  # by the cache: each stored file once per fetch and hit

    @property
    def hit_ratio(self) -> float | None:
        asked = self.hits + self.fetches
        return self.hits / asked if asked else None


def cache_totals(session: Session) -> CacheTotals:
    stored = UpstreamFile.stored.is_(True)
    files, fetches, hits, file_failures, stored_bytes, served = session.execute(
        select(
            func.count(UpstreamFile.id),
            func.count(UpstreamFile.id).filter(stored),
            func.coalesce(func.sum(UpstreamFile.hit_count), 0),
            func.coalesce(func.sum(UpstreamFile.failures), 0),
            func.coalesce(func.sum(UpstreamFile.size).filter(stored), 0),
            func.coalesce(
                func.sum(UpstreamFile.size * (UpstreamFile.hit_count + 1)).filter(stored), 0
            ),
        )
    ).one()
    pages, page_failures = session.execute(
        select(func.count(UpstreamProject.id), func.coalesce(func.sum(UpstreamProject.failures), 0))
    ).one()
    return CacheTotals(
        pages, files, fetches, int(hits), int(file_failures) + int(page_failures),
        int(stored_bytes), int(served),
    )  # fmt: skip


def recent_files(session: Session, limit: int = 10) -> list[UpstreamFile]:
    return list(session.execute(files_query().limit(limit)).scalars())


def recent_failures(session: Session, limit: int = 10) -> list[UpstreamFile]:
    query = (
        select(UpstreamFile)
        .where(UpstreamFile.failures > 0, UpstreamFile.stored.is_(False))
        .order_by(UpstreamFile.id.desc())
        .limit(limit)
    )
    return list(session.execute(query).scalars())


@dataclass(frozen=True)
class Purged:
    files: int
    pages: int
    bytes: int


def purge(
    session: Session,
    store: StorageBackend,
    name: str | None,
    actor: Actor,
    progress: Callable[[int], None] | None = None,
) -> Purged:
    """Remove the cached files (and kept pages) of ``name``, or of every name; audited.

    Files go in batches, each committed, so a long purge can be watched (``progress`` is
    called with each batch's size) and stopped without losing what it did."""
    normalized = normalize(name) if name else None
    files = size = 0
    while batch := _purge_batch(session, store, normalized):
        files, size = files + batch[0], size + batch[1]
        if progress is not None:
            progress(batch[0])
    pages_removed = delete(UpstreamProject)
    if normalized:
        pages_removed = pages_removed.where(UpstreamProject.normalized_name == normalized)
    pages = session.execute(pages_removed).rowcount  # type: ignore[attr-defined]
    bump(session)  # index responses kept by ResponseCache may list what is gone
    details = {"files": files, "pages": pages, "bytes": size}
    record(session, actor, "upstream_cache_purged", None, "UpstreamFile", None, normalized, details)
    session.commit()
    return Purged(files, pages, size)


def _purge_batch(
    session: Session, store: StorageBackend, normalized: str | None
) -> tuple[int, int] | None:
    query = select(UpstreamFile.id, UpstreamFile.storage_key, UpstreamFile.size)
    if normalized:
        query = query.where(UpstreamFile.normalized_name == normalized)
    rows = session.execute(query.order_by(UpstreamFile.id).limit(PURGE_BATCH)).all()
    if not rows:
        return None
    _remove(session, store, rows)
    return len(rows), sum(row.size or 0 for row in rows if row.storage_key)


def purge_file(session: Session, store: StorageBackend, file_id: int, actor: Actor) -> None:
    row = session.get(UpstreamFile, file_id)
    if row is None:
        raise NotFound("404 Upstream File Not Found")
    target = f"{row.normalized_name}/{row.filename}"
    details = {"sha256": row.sha256, "size": row.size}
    _remove(session, store, [(row.id, row.storage_key, row.size)])
    bump(session)
    record(session, actor, "upstream_file_purged", None, "UpstreamFile", file_id, target, details)
    session.commit()


def expire_unused(
    session: Session, store: StorageBackend, keep_days: int, now: datetime | None = None
) -> int:
    """Remove files and pages nobody used for ``keep_days``; returns how many files."""
    cutoff = (now or utcnow()) - timedelta(days=keep_days)
    last_use = func.coalesce(UpstreamFile.last_used_at, UpstreamFile.created_at)
    removed = 0
    while rows := session.execute(
        select(UpstreamFile.id, UpstreamFile.storage_key, UpstreamFile.size)
        .where(last_use < cutoff)
        .limit(PURGE_BATCH)
    ).all():
        _remove(session, store, rows)
        removed += len(rows)
    page_use = func.coalesce(UpstreamProject.last_used_at, UpstreamProject.created_at)
    pages = session.execute(delete(UpstreamProject).where(page_use < cutoff)).rowcount  # type: ignore[attr-defined]
    if removed or pages:
        bump(session)  # index responses kept by ResponseCache may list what is gone
    session.commit()
    return removed


def _remove(session: Session, store: StorageBackend, rows: list) -> None:  # type: ignore[type-arg]
    """Delete the rows, with their stored files scheduled in the same transaction (so a
    crash leaves no file behind: the workers' sweeper finishes the job), then the files."""
    keys = [StorageDeletion(storage_key=row[1]) for row in rows if row[1]]
    session.add_all(keys)
    session.execute(delete(UpstreamFile).where(UpstreamFile.id.in_([row[0] for row in rows])))
    session.commit()
    purge_deletions(session, store, [deletion.id for deletion in keys])
