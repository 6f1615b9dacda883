"""Upstream files as the cache keeps them (``UpstreamFile``): found on the kept pages,
recorded when first asked for (by which index), and their PEP 658 core metadata, fetched
once and kept when it matches its hash.  Their download is ``app.domain.upstream.download``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.domain.errors import NotFound
from app.domain.tokens import as_utc
from app.domain.upstream.client import Upstream, UpstreamError, fetch_small
from app.domain.upstream.index import MAX_ERROR, load_page, page_state
from app.domain.upstream.pages import name_candidates
from app.models import UpstreamFile


class UpstreamMismatch(UpstreamError):
    """The upstream's bytes are not the file its page announced: nothing is stored."""


@dataclass(frozen=True)
class CachedFile:
    """An upstream file as plain values; ``id`` None: listed on a kept page, not recorded."""

    id: int | None
    normalized_name: str
    filename: str
    sha256: str
    size: int | None
    url: str
    metadata_sha256: str | None
    storage_key: str | None = None
    stored: bool = False
    stored_at: datetime | None = None


def find_file(session: Session, sha256: str, filename: str) -> CachedFile | None:
    """The recorded file, or else the entry of a kept page that lists it (the page of one of
    the names its filename may belong to); None when no kept page lists it."""
    row = session.execute(
        select(UpstreamFile).where(UpstreamFile.sha256 == sha256, UpstreamFile.filename == filename)
    ).scalar_one_or_none()
    if row is not None:
        return cached_file(row)
    for normalized in name_candidates(filename):
        state = page_state(session, normalized)
        page = load_page(session, state.id) if state and state.digest else None
        entry = page.find(sha256, filename) if page else None
        if entry is not None:
            return CachedFile(
                None, normalized, entry.filename, entry.sha256, entry.size, entry.url,
                entry.metadata_sha256,
            )  # fmt: skip
    return None


def record_file(
    session: Session,
    found: CachedFile,
    requested_by: str,
    *,
    metadata: bytes | None = None,
    commit: bool = True,
) -> CachedFile:
    """Record a file the first time it is asked for (``requested_by``: the index), with its
    checked core metadata when given. ``commit=False`` leaves the commit to the caller's
    next write (one commit, not two, on the way to a download)."""
    if found.id is not None:
        return found
    row = UpstreamFile(
        normalized_name=found.normalized_name,
        filename=found.filename,
        sha256=found.sha256,
        size=found.size,
        url=found.url,
        metadata_sha256=found.metadata_sha256,
        metadata_bytes=metadata,
        requested_by=requested_by[:1024],
        stored=False,
        hit_count=0,
        failures=0,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # another request recorded it first
        row = session.execute(
            select(UpstreamFile).where(
                UpstreamFile.sha256 == found.sha256, UpstreamFile.filename == found.filename
            )
        ).scalar_one()
        if metadata is not None and row.metadata_sha256 == found.metadata_sha256:
            row.metadata_bytes = metadata
    if commit:
        session.commit()
    return cached_file(row)


def cached_file(row: UpstreamFile) -> CachedFile:
    """The row as plain values."""
    return CachedFile(
        row.id, row.normalized_name, row.filename, row.sha256, row.size, row.url,
        row.metadata_sha256, row.storage_key, row.stored, as_utc(row.stored_at),
    )  # fmt: skip


def metadata_of(
    session: Session, upstream: Upstream, found: CachedFile, requested_by: str
) -> bytes:
    """The file's core metadata (PEP 658), fetched once, checked against its sha256, kept;
    the file is recorded with it when this is the first request for it."""
    if found.metadata_sha256 is None:
        raise NotFound("404 Metadata Not Found")
    if found.id is not None:
        kept = session.execute(
            select(UpstreamFile.metadata_bytes).where(UpstreamFile.id == found.id)
        ).scalar_one_or_none()
        if kept is not None:
            return kept
    body = fetch_small(upstream, found.url + ".metadata")
    if hashlib.sha256(body).hexdigest() != found.metadata_sha256:
        error = UpstreamMismatch(
            f"502 Upstream metadata of {found.filename} failed verification; nothing was stored"
        )
        _count_failure(session, record_file(session, found, requested_by).id, error.message)
        raise error
    if found.id is None:
        record_file(session, found, requested_by, metadata=body)
        return body
    session.execute(
        update(UpstreamFile).where(UpstreamFile.id == found.id).values(metadata_bytes=body)
    )
    session.commit()
    return body


def _count_failure(session: Session, file_id: int | None, error: str) -> None:
    session.execute(
        update(UpstreamFile)
        .where(UpstreamFile.id == file_id)
        .values(failures=UpstreamFile.failures + 1, last_error=error[:MAX_ERROR])
    )
    session.commit()
