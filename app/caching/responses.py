"""The response cache: repeats of index requests answered from their finished responses.

``ResponseCache`` sits in front of Flask: a repeat of a request (same path, ``Accept`` and
credentials) is answered from the finished response, before Flask routes, authenticates
or renders anything. Index pages, the first answer too, are gzipped (once per page) for
clients that accept it. Its entries live in the process cache (``app.caching.process``),
so any write drops them.

Which headers are credentials is what authentication says: the host's own
(``Authorization``, ``PRIVATE-TOKEN``, ``JOB-TOKEN``) and those plugins registered; a
response is kept only if its caller was identified by nothing outside them
(``AuthResult.identified_by``).
"""

from __future__ import annotations

import functools
import gzip
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeGuard

from flask import request
from werkzeug.http import parse_accept_header, parse_etags

from app.caching.process import ProcessCache
from app.domain.errors import DATABASE_OUTAGES
from app.domain.identity import AuthResult
from app.domain.tokens import as_utc, is_expired
from app.metrics import RESPONSE_CACHE
from app.metrics.tally import TALLY

_CACHEABLE = "packyard.response_cacheable"
# Repeats of index pages are gzipped for clients that accept it (pip and uv do): a
# 200-version page shrinks from 151 KB to 31 KB for 2 ms of level-6 work, once per page.
GZIP_MIN_BYTES = 1024
GZIP_LEVEL = 6
_RECODED_HEADERS = ("content-length", "content-encoding", "etag")


def cache_this_response(caller: AuthResult, fresh_until: datetime | None = None) -> None:
    """Let ResponseCache answer repeats of this request until the caller's token expires
    (or ``fresh_until``, when sooner), if everything that identified ``caller`` is in its
    key.

    Only for responses that depend on nothing but the caller and the request's path,
    query and ``Accept``."""
    request.environ[_CACHEABLE] = (caller, fresh_until)


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
        """A 304's headers. Its Content-Length is the 200's (RFC 9110 8.6 allows exactly
        that): with a length, uWSGI's router neither chunks the bodiless answer nor closes
        the connection after it (``app.serving.close_after_bodiless``)."""
        kept = ("etag", "vary", "cache-control", "content-length")
        return [(k, v) for k, v in headers if k.lower() in kept]


class ResponseCache:
    """WSGI middleware: answers repeats of cacheable GETs from their finished responses.

    The key holds everything such a response depends on (the view marks it with
    ``cache_this_response``): path, query, ``Accept`` and ``credential_headers``, whose
    identity was resolved when the response was made; a revocation or any access change
    moves the generation and drops it. Requests with cookies always go to Flask.
    """

    def __init__(
        self,
        wsgi_app: Any,
        cache: ProcessCache,
        path_marker: str,
        credential_headers: Iterable[str],
    ) -> None:
        self.wsgi_app = wsgi_app
        self.cache = cache
        self.path_marker = path_marker
        self.credential_headers = frozenset(name.lower() for name in credential_headers)
        self._environ_keys = tuple(map(_environ_key, sorted(self.credential_headers)))
        self._blanks = ("",) * len(self._environ_keys)
        self._counters: dict[str, Any] = {}

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
            TALLY.add(self._counted("hit"))
            return self._serve(hit, environ, start_response)
        TALLY.add(self._counted("miss"))
        # The response is started here, once Flask has answered: a page it marked is then
        # sent as a repeat would be, gzipped for clients that accept it.
        started: list[Any] = []
        deferring = True

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if not deferring or exc_info is not None:
                return start_response(status, headers, exc_info)
            started[:] = [status, headers]
            return _no_write

        app_iter = self.wsgi_app(environ, capture)
        deferring = False
        if not started:  # the app starts its response as it is iterated: as it comes
            return app_iter
        status, headers = started
        marked = environ.get(_CACHEABLE)
        if marked is None or not status.startswith("200 "):
            start_response(status, headers)
            return app_iter
        try:
            body = b"".join(app_iter)
        finally:
            if hasattr(app_iter, "close"):
                app_iter.close()
        caller, fresh_until = marked
        etag = next((v for k, v in headers if k.lower() == "etag"), None)
        keep = self._keyed_on(caller)
        expires_at = _expiry(caller, fresh_until) if keep else None
        finished = FinishedResponse(list(headers), body, etag, expires_at)
        if keep:
            self.cache.put(key, finished, generation)
        return self._serve(finished, environ, start_response)

    def _counted(self, result: str) -> Any:
        # Made on first use, not at import: a worker sets up its metrics directory later.
        child = self._counters.get(result)
        if child is None:
            child = self._counters[result] = RESPONSE_CACHE.labels(result)
        return child

    def _keyed_on(self, caller: AuthResult | None) -> TypeGuard[AuthResult]:
        """Whether the key holds everything that identified ``caller``."""
        if caller is None or caller.identity is None or caller.identified_by is None:
            return False  # not cacheable, or a plugin did not say what it read
        return caller.identified_by <= self.credential_headers

    def _key(self, environ: dict[str, Any]) -> tuple[object, ...] | None:
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
            # environ.get(name, "") of each credential header, in the fastest spelling
            tuple(map(environ.get, self._environ_keys, self._blanks)),
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


def _no_write(data: bytes) -> None:
    # WSGI's legacy write() before the response is started: Flask never calls it.
    raise NotImplementedError("ResponseCache starts the response after the app returns")


def _expiry(caller: AuthResult, fresh_until: datetime | None) -> datetime | None:
    """When a kept response ends: its token's expiry (``is_expired`` reads it as UTC), or
    sooner for a kept upstream page, the only kind with ``fresh_until``."""
    assert caller.identity is not None  # _keyed_on
    expires_at = caller.identity.expires_at
    return expires_at if fresh_until is None else _sooner(expires_at, fresh_until)


def _sooner(moment: datetime | None, other: datetime) -> datetime:
    return other if moment is None else min(as_utc(moment), as_utc(other))  # type: ignore[type-var]


def _environ_key(header: str) -> str:
    """Where WSGI keeps a request header (PEP 3333: two of them have no ``HTTP_``)."""
    key = header.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key


@functools.lru_cache(maxsize=64)  # clients send a handful of distinct headers
def accepts_gzip(accept_encoding: str) -> bool:
    return bool(accept_encoding) and parse_accept_header(accept_encoding).quality("gzip") > 0
