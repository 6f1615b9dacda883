"""Process-local caches for the hot read paths, exact thanks to the cache generation.

A request reads the generation once (app.domain.generation); if any write moved it
since the cache was filled, the whole cache is dropped.  Entries hold plain values
(ids, bytes, identities), never ORM objects, so they outlive the request's session.

``ResponseCache`` goes one step further for index pages: a repeat of a request (same
path, ``Accept`` and credentials) is answered from the finished response, before Flask
routes, authenticates or renders anything, and gzipped (once per page) for clients that
accept it.
"""

from __future__ import annotations

import functools
import gzip
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from flask import current_app, request
from werkzeug.http import parse_accept_header, parse_etags

from app.domain.errors import DATABASE_OUTAGES
from app.domain.generation import GenerationReader
from app.domain.tokens import is_expired

T = TypeVar("T")
MAX_ENTRIES = 20_000
_SYNCED = "packyard.cache_synced"
_SYNC_FAILED = "packyard.cache_sync_failed"
_CACHEABLE = "packyard.response_cacheable"
# Repeats of index pages are gzipped for clients that accept it (pip and uv do): a
# 200-version page shrinks from 151 KB to 31 KB for 2 ms of level-6 work, once per page.
GZIP_MIN_BYTES = 1024
GZIP_LEVEL = 6
_RECODED_HEADERS = ("content-length", "content-encoding", "etag")


class ProcessCache:
    """A bounded LRU mapping, cleared whenever the generation it was filled at moves on."""

    def __init__(self, generation: GenerationReader, max_entries: int = MAX_ENTRIES) -> None:
        self._read_generation = generation.read
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._generation: int | None = None
        self._max_entries = max_entries
        self._lock = threading.Lock()

    def sync(self, environ: dict[str, Any]) -> None:
        """Drop everything if the generation moved; read once per request (WSGI environ).

        A read that failed because the database is down fails again at once for the rest
        of the request: one attempt per request, not one per cache lookup."""
        if environ.get(_SYNCED):
            return
        if (failure := environ.get(_SYNC_FAILED)) is not None:
            raise failure
        try:
            generation = self._read_generation()
        except DATABASE_OUTAGES as error:
            environ[_SYNC_FAILED] = error
            raise
        environ[_SYNCED] = True
        if generation != self._generation:
            with self._lock:
                self._entries.clear()
                self._generation = generation

    def peek(self, key: Hashable) -> Any:
        """The entry or None, without computing it; a hit counts as recent use."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            return None

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]  # type: ignore[no-any-return]
            generation = self._generation
        value = compute()  # outside the lock: may run queries
        self.put(key, value, generation)
        return value

    def put(self, key: Hashable, value: Any, generation: int | None) -> None:
        """Keep ``value`` if it was computed at the current generation."""
        with self._lock:
            if generation == self._generation:  # not filled from a stale generation
                self._entries[key] = value
                if len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)

    @property
    def generation(self) -> int | None:
        return self._generation


def request_cache() -> ProcessCache:
    """The app's cache, synced with the database's generation once per request."""
    cache: ProcessCache = current_app.extensions["packyard.cache"]
    cache.sync(request.environ)
    return cache


def cache_this_response(expires_at: datetime | None) -> None:
    """Let ResponseCache answer repeats of this request until the caller's token expires.

    Only for responses that depend on nothing but the cache key and cached values."""
    request.environ[_CACHEABLE] = expires_at


@dataclass
class FinishedResponse:
    headers: list[tuple[str, str]]
    body: bytes
    etag: str | None
    expires_at: datetime | None  # of the token that was presented
    _gzipped: tuple[list[tuple[str, str]], bytes] | None = field(default=None, repr=False)

    def gzipped(self) -> tuple[list[tuple[str, str]], bytes]:
        """The same response gzip-encoded, compressed on first use. Its ETag is weak, as
        the representation differs byte for byte (If-None-Match compares weakly)."""
        if self._gzipped is None:  # two threads may both compress: same result
            body = gzip.compress(self.body, compresslevel=GZIP_LEVEL, mtime=0)
            headers = [(k, v) for k, v in self.headers if k.lower() not in _RECODED_HEADERS]
            headers += [("Content-Encoding", "gzip"), ("Content-Length", str(len(body)))]
            if self.etag:
                headers.append(("ETag", f"W/{self.etag}"))
            self._gzipped = (headers, body)
        return self._gzipped

    @staticmethod
    def not_modified(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(k, v) for k, v in headers if k.lower() in ("etag", "vary", "cache-control")]


class ResponseCache:
    """WSGI middleware: answers repeats of cacheable GETs from their finished responses.

    The key holds everything such a response depends on (the view marks it with
    ``cache_this_response``): path, query, ``Accept`` and the credential headers, whose
    identity was resolved when the response was made; a revocation or any access change
    moves the generation and drops it. Requests with cookies always go to Flask.
    """

    def __init__(self, wsgi_app: Any, cache: ProcessCache, path_marker: str) -> None:
        self.wsgi_app = wsgi_app
        self.cache = cache
        self.path_marker = path_marker

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        key = self._key(environ)
        if key is None:
            return self.wsgi_app(environ, start_response)
        try:
            self.cache.sync(environ)
        except DATABASE_OUTAGES:
            # Nothing cached can be proven current: Flask answers (503, with Retry-After).
            return self.wsgi_app(environ, start_response)
        generation = self.cache.generation
        hit: FinishedResponse | None = self.cache.peek(key)
        if hit is not None and not is_expired(hit.expires_at):
            return self._serve(hit, environ, start_response)
        started: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [status, headers]
            return start_response(status, headers, exc_info)

        app_iter = self.wsgi_app(environ, capture)
        if _CACHEABLE not in environ or not started or not started[0].startswith("200 "):
            return app_iter
        try:
            body = b"".join(app_iter)
        finally:
            if hasattr(app_iter, "close"):
                app_iter.close()
        headers = started[1]
        etag = next((v for k, v in headers if k.lower() == "etag"), None)
        finished = FinishedResponse(list(headers), body, etag, environ[_CACHEABLE])
        self.cache.put(key, finished, generation)
        return [body]

    def _key(self, environ: dict[str, Any]) -> tuple[str, ...] | None:
        path = environ.get("PATH_INFO", "")
        if (
            environ["REQUEST_METHOD"] != "GET"
            or self.path_marker not in path
            or "HTTP_COOKIE" in environ
        ):
            return None
        return (
            "response",
            environ.get("SCRIPT_NAME", ""),
            path,
            environ.get("QUERY_STRING", ""),
            environ.get("HTTP_ACCEPT", ""),
            environ.get("HTTP_AUTHORIZATION", ""),
            environ.get("HTTP_PRIVATE_TOKEN", ""),
            environ.get("HTTP_JOB_TOKEN", ""),
        )

    @staticmethod
    def _serve(hit: FinishedResponse, environ: dict[str, Any], start_response: Any) -> Any:
        headers, body = hit.headers, hit.body
        if len(body) >= GZIP_MIN_BYTES and accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", "")):
            headers, body = hit.gzipped()
        condition = environ.get("HTTP_IF_NONE_MATCH")
        if condition and hit.etag and parse_etags(condition).contains_weak(hit.etag.strip('"')):
            start_response("304 NOT MODIFIED", FinishedResponse.not_modified(headers))
            return []
        start_response("200 OK", headers)
        return [body]


@functools.lru_cache(maxsize=64)  # clients send a handful of distinct headers
def accepts_gzip(accept_encoding: str) -> bool:
    return bool(accept_encoding) and parse_accept_header(accept_encoding).quality("gzip") > 0
