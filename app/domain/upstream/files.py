"""Upstream files as the cache keeps them (``UpstreamFile``): recorded when first asked
for, streamed to that client as they arrive from the upstream, and stored only once
their sha256 (and size) match the upstream page's.

One request at a time downloads a file, across processes and hosts: it holds a lease on
the row (``fetch_started_at``/``fetch_owner``, set by a conditional UPDATE and refreshed
as bytes arrive).  Other requests for the file wait for it to be stored and serve it from
storage; a lease whose holder went silent is taken over.

The bytes a client receives are checked as they go: the last chunk is held back until the
whole file matched, so a tampered file never reaches a client complete (its connection is
cut short of the announced ``Content-Length``), and nothing of it is stored.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.domain.errors import NotFound
from app.domain.storage import StorageBackend
from app.domain.tokens import as_utc
from app.domain.upstream.client import (
    Upstream,
    UpstreamError,
    UpstreamTimeout,
    fetch_small,
    open_file,
    translated_errors,
)
from app.domain.upstream.index import MAX_ERROR, load_page, page_state
from app.domain.upstream.pages import name_candidates
from app.models import UpstreamFile
from app.models.base import utcnow

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
LEASE_TIMEOUT = timedelta(seconds=30)  # a holder silent this long is presumed gone
HEARTBEAT_EVERY = 5.0  # seconds between two refreshes of a held lease
WAIT_POLL = 0.1  # seconds between two looks at a file another request downloads
WAIT_MAX = 15 * 60.0  # seconds a request waits for another's download at most


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


@dataclass(frozen=True)
class Streaming:
    """The first download of a file: its bytes as they arrive, checked at the end."""

    length: int
    chunks: Iterator[bytes]


def find_file(session: Session, sha256: str, filename: str) -> CachedFile | None:
    """The recorded file, or else the entry of a kept page that lists it (the page of one of
    the names its filename may belong to); None when no kept page lists it."""
    row = session.execute(
        select(UpstreamFile).where(UpstreamFile.sha256 == sha256, UpstreamFile.filename == filename)
    ).scalar_one_or_none()
    if row is not None:
        return _cached(row)
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
    return _cached(row)


def _cached(row: UpstreamFile) -> CachedFile:
    return CachedFile(
        row.id, row.normalized_name, row.filename, row.sha256, row.size, row.url,
        row.metadata_sha256, row.storage_key, row.stored, as_utc(row.stored_at),
    )  # fmt: skip


def storage_key(sha256: str, filename: str) -> str:
    return f"upstream/{sha256[:2]}/{sha256}/{filename}"


def obtain_file(
    session: Session, store: StorageBackend, upstream: Upstream, cached: CachedFile
) -> CachedFile | Streaming:
    """The stored file, or the stream of its download by this request, or (when another
    request is downloading it) the stored file once that download is done.

    A stored file returned is a hit: the caller counts it (``app.domain.upstream.hits``)."""
    assert cached.id is not None
    deadline = time.monotonic() + WAIT_MAX
    while True:
        if cached.stored:
            return cached
        owner = _claim(session, cached.id)
        if owner is not None:
            return _download(session, store, upstream, cached, owner)
        cached = _wait(session, cached.id, deadline)


def _claim(session: Session, file_id: int) -> str | None:
    """Take the download lease if it is free or stale; the owner token, or None."""
    now, owner = utcnow(), uuid.uuid4().hex
    claimed = session.execute(
        update(UpstreamFile)
        .where(
            UpstreamFile.id == file_id,
            UpstreamFile.stored.is_(False),
            or_(
                UpstreamFile.fetch_owner.is_(None),
                UpstreamFile.fetch_started_at < now - LEASE_TIMEOUT,
            ),
        )
        .values(fetch_started_at=now, fetch_owner=owner)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return owner if claimed.rowcount else None  # type: ignore[attr-defined]


def _wait(session: Session, file_id: int, deadline: float) -> CachedFile:
    """The file once stored, or once its lease is free or stale (to claim it)."""
    while time.monotonic() < deadline:
        time.sleep(WAIT_POLL)
        session.commit()  # a new transaction: see the holder's commits
        row = session.get(UpstreamFile, file_id, populate_existing=True)
        if row is None:
            raise NotFound("404 Package Not Found")  # purged meanwhile
        started = as_utc(row.fetch_started_at)
        if row.stored or row.fetch_owner is None or not started:
            return _cached(row)
        if utcnow() - started >= LEASE_TIMEOUT:
            return _cached(row)
    raise UpstreamTimeout("504 Another request is still downloading this file from the upstream")


def _download(
    session: Session, store: StorageBackend, upstream: Upstream, cached: CachedFile, owner: str
) -> CachedFile | Streaming:
    """Open the upstream file and relay it; without a known length, download it whole
    first (a client could not tell a cut answer from a complete one)."""
    try:
        response = open_file(upstream, cached.url)
    except UpstreamError as exc:
        _release(session, cached.id, owner, exc.message)
        raise
    length = _length(response)
    if length is None:
        length = cached.size
    if cached.size is not None and length != cached.size:
        response.close()
        error = UpstreamMismatch(
            f"502 Upstream file {cached.filename} is {length} bytes, its page says {cached.size}"
        )
        _release(session, cached.id, owner, error.message)
        raise error
    chunks = _relay(session, store, response, cached, owner)
    if length is None:
        for _ in chunks:
            pass
        row = session.get(UpstreamFile, cached.id, populate_existing=True)
        if row is None:
            raise NotFound("404 Package Not Found")
        return _cached(row)
    return Streaming(length, _primed(chunks))


def _primed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Run the relay to its first chunk now: a failure before any byte would be sent (a
    small file is checked whole by then) is answered as an error, not as a cut stream."""
    first = next(chunks, None)

    def relay() -> Iterator[bytes]:
        try:
            if first is not None:
                yield first
            yield from chunks
        finally:
            chunks.close()

    return relay()


def _length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


def _relay(
    session: Session,
    store: StorageBackend,
    response: requests.Response,
    cached: CachedFile,
    owner: str,
) -> Iterator[bytes]:
    """Yield the upstream's bytes while writing and hashing them; store the file when it
    matches, holding back the last chunk until then.  A mismatch or an upstream failure
    raises (cutting the client's answer short) and stores nothing."""
    fd, name = tempfile.mkstemp(dir=store.temp_dir(), prefix="upstream-", suffix=".part")
    temp, outcome = Path(name), "abandoned"
    try:
        with os.fdopen(fd, "wb") as out:
            held, digest, size = None, hashlib.sha256(), 0
            beat = time.monotonic()
            for chunk in _stream(response):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if held is not None:
                    yield held
                held = chunk
                if time.monotonic() - beat >= HEARTBEAT_EVERY:
                    _heartbeat(session, cached.id, owner)
                    beat = time.monotonic()
        _verify(cached, digest.hexdigest(), size)
        _store(session, store, cached, owner, temp, size)
        outcome = "stored"
        if held is not None:
            yield held
    except Exception as exc:
        outcome = "failed"
        message = exc.message if isinstance(exc, UpstreamError) else f"502 {exc}"
        _release(session, cached.id, owner, message)
        log.warning("upstream download of %s failed: %s", cached.filename, message)
        raise
    finally:
        response.close()
        if outcome == "abandoned":  # the client went away: another request may take over
            _release(session, cached.id, owner, None)
        if outcome != "stored":
            temp.unlink(missing_ok=True)


def _stream(response: requests.Response) -> Iterator[bytes]:
    with translated_errors():
        for chunk in response.raw.stream(CHUNK, decode_content=False):
            if chunk:
                yield chunk


def _verify(cached: CachedFile, sha256: str, size: int) -> None:
    if sha256 != cached.sha256:
        raise UpstreamMismatch(
            f"502 Upstream file {cached.filename} failed verification: its sha256 is {sha256},"
            f" its page says {cached.sha256}; nothing was stored"
        )
    if cached.size is not None and size != cached.size:
        raise UpstreamMismatch(
            f"502 Upstream file {cached.filename} is {size} bytes, its page says {cached.size}"
        )


def _store(
    session: Session, store: StorageBackend, cached: CachedFile, owner: str, temp: Path, size: int
) -> None:
    key = storage_key(cached.sha256, cached.filename)
    store.store(key, temp)
    now = utcnow()
    done = session.execute(
        update(UpstreamFile)
        .where(UpstreamFile.id == cached.id)
        .values(
            stored=True, storage_key=key, size=size, stored_at=now, last_used_at=now,
            fetch_started_at=None, fetch_owner=None, last_error=None,
        )
        .execution_options(synchronize_session=False)
    )  # fmt: skip
    session.commit()
    if not done.rowcount:  # type: ignore[attr-defined]
        store.delete(key)  # purged while it was downloading


def _heartbeat(session: Session, file_id: int | None, owner: str) -> None:
    session.execute(
        update(UpstreamFile)
        .where(UpstreamFile.id == file_id, UpstreamFile.fetch_owner == owner)
        .values(fetch_started_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.commit()


def _release(session: Session, file_id: int | None, owner: str, error: str | None) -> None:
    """Give the lease up; with ``error``, count a failure of the upstream."""
    session.rollback()
    values: dict[str, Any] = {"fetch_started_at": None, "fetch_owner": None}
    if error is not None:
        values.update(failures=UpstreamFile.failures + 1, last_error=error[:MAX_ERROR])
    session.execute(
        update(UpstreamFile)
        .where(UpstreamFile.id == file_id, UpstreamFile.fetch_owner == owner)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.commit()


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
