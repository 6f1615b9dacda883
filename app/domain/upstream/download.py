"""Downloading an upstream file into the cache: streamed to the client that first asked
as it arrives from the upstream, stored only once its sha256 (and size) match the page's.

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
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import requests
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.domain.errors import NotFound
from app.domain.storage import StorageBackend
from app.domain.tokens import as_utc
from app.domain.upstream.client import (
    Upstream,
    UpstreamError,
    UpstreamTimeout,
    open_file,
    translated_errors,
)
from app.domain.upstream.files import CachedFile, UpstreamMismatch, cached_file
from app.domain.upstream.leases import DOWNLOAD, LEASE_TIMEOUT, claim, release
from app.models import UpstreamFile
from app.models.base import utcnow

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
HEARTBEAT_EVERY = 5.0  # seconds between two refreshes of a held lease
WAIT_POLL = 0.1  # seconds between two looks at a file another request downloads
WAIT_MAX = 15 * 60.0  # seconds a request waits for another's download at most


@dataclass(frozen=True)
class Streaming:
    """The first download of a file: its bytes as they arrive, checked at the end."""

    length: int
    chunks: Iterator[bytes]


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
        owner = claim(session, cached.id, DOWNLOAD, UpstreamFile.stored.is_(False))
        if owner is not None:
            return _download(session, store, upstream, cached, owner)
        cached = _wait(session, cached.id, deadline)


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
            return cached_file(row)
        if utcnow() - started >= LEASE_TIMEOUT:
            return cached_file(row)
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
        return cached_file(row)
    return Streaming(length, _primed(chunks))


def _primed(chunks: Generator[bytes, None, None]) -> Iterator[bytes]:
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
) -> Generator[bytes, None, None]:
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
    release(session, file_id, DOWNLOAD, owner, error)
