"""Upstream files as the cache keeps them (``UpstreamFile``): found on the kept pages,
recorded when first asked for (by which index), and their PEP 658 core metadata, fetched
once and kept when it matches its hash.  Their download is ``app.domain.upstream.download``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.domain.errors import NotFound
from app.domain.tokens import as_utc
from app.domain.upstream.client import Upstream, UpstreamError, UpstreamTimeout, fetch_small
from app.domain.upstream.index import load_page, page_state
from app.domain.upstream.leases import METADATA, claim, release
from app.domain.upstream.pages import name_candidates
from app.models import UpstreamFile

METADATA_WAIT_POLL = 0.05  # seconds between two looks at metadata another request fetches
METADATA_WAIT_MAX = 60.0  # seconds a request waits for another's fetch at most


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
    """The file's core metadata (PEP 658), fetched once, checked against its sha256, kept.

    The file is recorded first, so that its row can hold the ``METADATA`` lease: of many
    first requests at once, in any process, one fetches and the others wait for what it
    keeps (or take over when it fails or goes silent)."""
    if found.metadata_sha256 is None:
        raise NotFound("404 Metadata Not Found")
    file_id = record_file(session, found, requested_by).id
    assert file_id is not None
    deadline = time.monotonic() + METADATA_WAIT_MAX
    while True:
        kept = session.execute(
            select(UpstreamFile.metadata_bytes).where(UpstreamFile.id == file_id)
        ).scalar_one_or_none()
        if kept is not None:
            return kept
        owner = claim(session, file_id, METADATA, UpstreamFile.metadata_bytes.is_(None))
        if owner is not None:
            return _fetch_metadata(session, upstream, found, file_id, owner)
        if time.monotonic() >= deadline:
            raise UpstreamTimeout("504 Another request is still fetching this metadata")
        time.sleep(METADATA_WAIT_POLL)
        session.commit()  # a new transaction: see the holder's commit


def _fetch_metadata(
    session: Session, upstream: Upstream, found: CachedFile, file_id: int, owner: str
) -> bytes:
    """Fetch, check and keep the metadata while holding its lease; give the lease up
    (counting a failure when the bytes were wrong) if that fails."""
    try:
        body = fetch_small(upstream, found.url + ".metadata")
    except UpstreamError:
        release(session, file_id, METADATA, owner, None)
        raise
    if hashlib.sha256(body).hexdigest() != found.metadata_sha256:
        error = UpstreamMismatch(
            f"502 Upstream metadata of {found.filename} failed verification; nothing was stored"
        )
        release(session, file_id, METADATA, owner, error.message)
        raise error
    session.execute(
        update(UpstreamFile)
        .where(UpstreamFile.id == file_id)
        .values(metadata_bytes=body, metadata_fetch_owner=None, metadata_fetch_started_at=None)
    )
    session.commit()
    return body
